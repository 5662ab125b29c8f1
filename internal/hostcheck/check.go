package hostcheck

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Status is a check's verdict, as doctor prints it.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is one line of doctor's report.
type Result struct {
	Name   string // short, e.g. "PC/SC service"
	Status Status
	Msg    string
	Fix    string // what to do, for Warn and Fail
}

// PC/SC return codes that the checks tell apart. They have the same
// values in pcsc-lite (src/PCSC/pcsclite.h.in), Windows (winerror.h) and
// macOS (PCSC.framework's pcsclite.h).
const (
	scardSuccess          = 0x00000000
	scardENoService       = 0x8010001D // the resource manager is not running
	scardEServiceStopped  = 0x8010001E // it has stopped (Windows: last reader gone)
	scardENoReaders       = 0x8010002E // SCARD_E_NO_READERS_AVAILABLE
	scardEReaderUnavail   = 0x80100017
	scardEUnknownReader   = 0x80100009
	scardFInternalError   = 0x80100001
	scardENoMemory        = 0x80100006
	scardEInvalidHandle   = 0x80100003
	scardEInsufficientBuf = 0x80100008
)

// PCSC is what the native backend learned: the return codes of
// SCardEstablishContext and of SCardListReaders, and the readers listed.
// Err is set when PC/SC could not be asked at all (no library).
type PCSC struct {
	EstablishCode uint32
	ListCode      uint32
	Readers       []string
	Err           error
}

// ErrNotProbed is PCSC.Err when PC/SC was not asked at all (a build
// without the native backend): the PC/SC checks are skipped, not failed.
var ErrNotProbed = errors.New("not checked: this build has no native PC/SC backend")

// ServiceState is what the Windows service manager says about a service
// (ProbeService).
type ServiceState struct {
	Known     bool   // false: not asked or not available
	Running   bool   // SERVICE_RUNNING
	StartType string // "auto", "manual" or "disabled"
}

// SmartCardService checks that PC/SC answers. On Windows the Smart Card
// service (SCardSvr) runs only while a reader is attached: SCardEstablish-
// Context fails with SCARD_E_NO_SERVICE until one is, and with
// SCARD_E_SERVICE_STOPPED after the last one is removed (Microsoft Learn,
// "Smart Card Service"; SCardAccessStartedEvent). A disabled service never
// starts. On macOS PC/SC is CryptoTokenKit's ctkpcscd, started on demand.
func SmartCardService(goos string, p PCSC, svc ServiceState) Result {
	r := Result{Name: "PC/SC service"}
	switch {
	case errors.Is(p.Err, ErrNotProbed):
		r.Status, r.Msg = Skip, p.Err.Error()
	case p.Err != nil:
		r.Status, r.Msg = Fail, "cannot use the host's PC/SC: "+p.Err.Error()
		switch goos {
		case "windows":
			r.Fix = "winscard.dll is part of Windows; under Wine, use wine 10 or later (Debian trixie's wine64), whose winscard.dll talks to pcscd"
		case "darwin":
			r.Fix = "PCSC.framework is part of macOS; report this with the output of `cardshare version`"
		}
	case goos == "windows" && svc.Known && svc.StartType == "disabled":
		r.Status, r.Msg = Fail, "the Smart Card service (SCardSvr) is disabled"
		r.Fix = "in an administrator PowerShell: `Set-Service SCardSvr -StartupType Manual`, then attach a reader"
	case p.EstablishCode == scardENoService || p.EstablishCode == scardEServiceStopped:
		r.Status = Fail
		r.Msg = fmt.Sprintf("the PC/SC service is not running (%s)", codeName(p.EstablishCode))
		switch goos {
		case "windows":
			r.Msg = fmt.Sprintf("the Smart Card service (SCardSvr) is not running (%s)", codeName(p.EstablishCode))
			r.Fix = "attach a reader: Windows starts the service when one is plugged in and stops it when the last one goes; cardshare waits for it"
		case "darwin":
			r.Fix = "attach a reader; if PC/SC still does not answer, check whether a configuration profile turns smart cards off (allowSmartCard in `sudo defaults read /Library/Preferences/com.apple.security.smartcard`)"
		default:
			r.Fix = "start pcscd: `sudo systemctl start pcscd.socket`"
		}
	case p.EstablishCode != scardSuccess:
		r.Status, r.Msg = Fail, "SCardEstablishContext failed: "+codeName(p.EstablishCode)
	default:
		r.Status, r.Msg = OK, "PC/SC answers"
		if goos == "windows" && svc.Known && svc.Running {
			r.Msg = "the Smart Card service runs and answers"
		}
	}
	return r
}

// Readers checks that PC/SC lists a reader. Windows reports none with
// SCARD_E_NO_READERS_AVAILABLE (0x8010002E), and so do macOS and
// pcsc-lite; some return success with an empty list.
func Readers(goos string, p PCSC) Result {
	r := Result{Name: "readers"}
	switch {
	case p.Err != nil || p.EstablishCode != scardSuccess:
		r.Status, r.Msg = Skip, "needs PC/SC"
	case p.ListCode == scardENoReaders || p.ListCode == scardSuccess && len(p.Readers) == 0:
		r.Status, r.Msg = Warn, "no reader is attached"
		r.Fix = "attach a reader (guests see readers as they come and go)"
		if goos == "darwin" {
			r.Fix += "; since macOS 14 Apple's own CCID driver names readers differently from libccid on Linux, so reader policies must use the names `cardshare doctor` lists here"
		}
	case p.ListCode != scardSuccess:
		r.Status, r.Msg = Fail, "SCardListReaders failed: "+codeName(p.ListCode)
	default:
		r.Status = OK
		r.Msg = fmt.Sprintf("%d reader(s): %s", len(p.Readers), strings.Join(p.Readers, "; "))
	}
	return r
}

// MacOSVersion warns about macOS releases with known PC/SC bugs:
// SCardControl fails on macOS 14.0 to 14.2 (fixed in 14.3), which breaks
// pinpad readers and other CONTROL requests from guests.
func MacOSVersion(version string) Result {
	r := Result{Name: "macOS"}
	maj, min, ok := majorMinor(version)
	switch {
	case !ok:
		r.Status, r.Msg = Skip, fmt.Sprintf("unknown macOS version %q", version)
	case maj == 14 && min < 3:
		r.Status, r.Msg = Warn, "macOS "+version+": SCardControl fails before macOS 14.3 (pinpad readers, reader features)"
		r.Fix = "update macOS to 14.3 or later"
	default:
		r.Status, r.Msg = OK, "macOS "+version
	}
	return r
}

func majorMinor(v string) (int, int, bool) {
	f := strings.Split(strings.TrimSpace(v), ".")
	maj, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, 0, false
	}
	min := 0
	if len(f) > 1 {
		if min, err = strconv.Atoi(f[1]); err != nil {
			return 0, 0, false
		}
	}
	return maj, min, true
}

// codeName names a PC/SC return code.
func codeName(c uint32) string {
	names := map[uint32]string{
		scardENoService:       "SCARD_E_NO_SERVICE",
		scardEServiceStopped:  "SCARD_E_SERVICE_STOPPED",
		scardENoReaders:       "SCARD_E_NO_READERS_AVAILABLE",
		scardEReaderUnavail:   "SCARD_E_READER_UNAVAILABLE",
		scardEUnknownReader:   "SCARD_E_UNKNOWN_READER",
		scardFInternalError:   "SCARD_F_INTERNAL_ERROR",
		scardENoMemory:        "SCARD_E_NO_MEMORY",
		scardEInvalidHandle:   "SCARD_E_INVALID_HANDLE",
		scardEInsufficientBuf: "SCARD_E_INSUFFICIENT_BUFFER",
	}
	if n, ok := names[c]; ok {
		return fmt.Sprintf("%s (%#x)", n, c)
	}
	return fmt.Sprintf("%#x", c)
}
