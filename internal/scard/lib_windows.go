//go:build windows

package scard

import (
	"errors"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

const windowsHint = "winscard.dll is part of Windows; under Wine, install a Wine with winscard support (Wine 8 or later) and the host's libpcsclite"

// wideNames are symbolNames with the W variants of the calls that take
// strings.
var wideNames = [...]string{"SCardEstablishContext", "SCardReleaseContext", "SCardListReadersW",
	"SCardGetStatusChangeW", "SCardCancel", "SCardConnectW", "SCardReconnect", "SCardDisconnect",
	"SCardBeginTransaction", "SCardEndTransaction", "SCardTransmit", "SCardControl", "SCardStatusW",
	"SCardGetAttrib", "SCardSetAttrib"}

// winscard is the Windows Library: proc plus the service quirks.
type winscard struct {
	*proc
	accessStarted, releaseStarted *windows.LazyProc
}

func open() (Library, error) {
	dll := windows.NewLazySystemDLL("winscard.dll")
	if err := dll.Load(); err != nil {
		return nil, &LoadError{Library: "winscard.dll", Hint: windowsHint, Err: err}
	}
	w := &winscard{
		proc: &proc{
			name: "winscard.dll",
			abi:  abiWindows64,
			// Real Windows blocks in SCardGetStatusChange until a state
			// differs from dwCurrentState, whose high 16 bits must carry
			// the event count it last reported.
			features: Features{PnP: true, EventCounts: true, BlockingWait: true},
			sys: func(fn uintptr, args ...uintptr) uintptr {
				r, _, _ := syscall.SyscallN(fn, args...)
				return r
			},
		},
		accessStarted:  dll.NewProc("SCardAccessStartedEvent"),
		releaseStarted: dll.NewProc("SCardReleaseStartedEvent"),
	}
	if unsafe.Sizeof(uintptr(0)) == 4 {
		w.abi = abiWindows32
	}
	if isWine() {
		// Wine's winscard.dll passes libpcsclite's values through
		// (dlls/winscard/winscard.c), and its SCardGetStatusChangeW
		// returns at once whatever dwCurrentState says.
		w.name = "winscard.dll (Wine)"
		w.abi.windows = false
		w.features.BlockingWait = false
	}
	err := w.fn.load(wideNames, func(s string) (uintptr, error) {
		p := dll.NewProc(s)
		if err := p.Find(); err != nil {
			return 0, err
		}
		return p.Addr(), nil
	})
	if err != nil {
		return nil, &LoadError{Library: "winscard.dll", Hint: windowsHint, Err: err}
	}
	return w, nil
}

// isWine reports whether ntdll.dll is Wine's: it exports wine_get_version.
func isWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// WaitService waits for the Smart Card service, which Windows starts only
// once a reader has been attached (SCardEstablishContext says
// SCARD_E_NO_SERVICE until then): SCardAccessStartedEvent returns an event
// that is set while it runs ("SCardAccessStartedEvent function",
// learn.microsoft.com/windows/win32/api/winscard/nf-winscard-scardaccessstartedevent).
func (w *winscard) WaitService(timeout time.Duration) error {
	if w.accessStarted.Find() != nil {
		time.Sleep(timeout)
		return nil
	}
	h, _, _ := w.accessStarted.Call()
	if h == 0 {
		// Wine's is a stub returning no event.
		time.Sleep(timeout)
		return nil
	}
	defer w.releaseStarted.Call()
	ev, err := windows.WaitForSingleObject(windows.Handle(h), uint32(timeout.Milliseconds()))
	if err != nil {
		return err
	}
	if ev != windows.WAIT_OBJECT_0 {
		return errors.New("scard: the Smart Card service did not start")
	}
	return nil
}
