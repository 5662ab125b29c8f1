package scard

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// This file makes the calls of Library over the function addresses of a
// loaded PC/SC library, for any ABI. Buffers handed to C code are Go heap
// memory (the garbage collector does not move it) kept alive by call's
// //go:uintptrescapes and runtime.KeepAlive.

// symbols are the addresses of the library's functions.
type symbols struct {
	establish, release, list, getStatusChange, cancel, connect, reconnect,
	disconnect, begin, end, transmit, control, status, getAttrib, setAttrib uintptr
}

// symbolNames are the functions to load, in the order of symbols, for
// libraries with 8-bit strings.
var symbolNames = [...]string{"SCardEstablishContext", "SCardReleaseContext", "SCardListReaders",
	"SCardGetStatusChange", "SCardCancel", "SCardConnect", "SCardReconnect", "SCardDisconnect",
	"SCardBeginTransaction", "SCardEndTransaction", "SCardTransmit", "SCardControl", "SCardStatus",
	"SCardGetAttrib", "SCardSetAttrib"}

// load fills s with lookup(name) for each of names.
func (s *symbols) load(names [15]string, lookup func(string) (uintptr, error)) error {
	dst := [...]*uintptr{&s.establish, &s.release, &s.list, &s.getStatusChange, &s.cancel, &s.connect,
		&s.reconnect, &s.disconnect, &s.begin, &s.end, &s.transmit, &s.control, &s.status,
		&s.getAttrib, &s.setAttrib}
	for i, name := range names {
		p, err := lookup(name)
		if err != nil {
			return fmt.Errorf("scard: %s: %w", name, err)
		}
		*dst[i] = p
	}
	return nil
}

// proc is a Library over a loaded library.
type proc struct {
	name     string
	abi      abi
	fn       symbols
	features Features
	// sys calls the C function fn with args and returns its result
	// register: purego.SyscallN, or syscall.SyscallN on Windows.
	sys func(fn uintptr, args ...uintptr) uintptr
	// offload, when not nil, makes the call on a thread of its own that
	// waits outside the Go scheduler (offload_linux.go), and says
	// false when it cannot.
	offload func(fn uintptr, args []uintptr) (uintptr, bool)
}

var _ Library = (*proc)(nil)

// call calls fn. Pointers converted to uintptr in its argument list are
// moved to the heap and kept alive until it returns.
//
// Where it can (linux/amd64, linux/arm64), the call runs on an offload
// thread (offload_linux.go) and this goroutine waits in the network poller.
// Otherwise the goroutine's thread makes the call and waits in it, and a
// goroutine that a network read has just woken would take the thread that
// was blocked in the runtime's network poller into that wait: no thread
// polls until sysmon does, every 10 ms, so other goroutines of the process
// that wait for the network (a relay, other guests, an in-process virtual
// card) stall for that long during every call. So call first starts an
// empty goroutine: the go statement wakes an idle thread (runtime wakep)
// when a processor is idle, which runs it and then waits in the poller,
// and when none is idle the goroutine left in the run queue makes sysmon
// hand this call's processor to another thread (retake). Measured with the
// test card in process (nativepcsc's e2e setup, 500 APDUs): 221-291 APDU/s
// and 132-166 round trips over 10 ms with a plain call; 3,811-4,493 APDU/s
// and none over 10 ms so.
//
//go:uintptrescapes
func (p *proc) call(fn uintptr, args ...uintptr) Code {
	if p.offload != nil {
		if r, ok := p.offload(fn, args); ok {
			return p.abi.code(r)
		}
	}
	go func() {}()
	return p.abi.code(p.sys(fn, args...))
}

func (p *proc) String() string     { return p.name }
func (p *proc) Features() Features { return p.features }

// word returns a zeroed buffer for one out parameter of up to 8 bytes.
func word() []byte { return make([]byte, 8) }

func (p *proc) EstablishContext(scope uint32) (Context, error) {
	h := word()
	c := p.call(p.fn.establish, uintptr(scope), 0, 0, uintptr(unsafe.Pointer(&h[0])))
	return Context(getWord(h, p.abi.handle)), errOf(c)
}

func (p *proc) ReleaseContext(ctx Context) error {
	return errOf(p.call(p.fn.release, uintptr(ctx)))
}

func (p *proc) Cancel(ctx Context) error {
	return errOf(p.call(p.fn.cancel, uintptr(ctx)))
}

func (p *proc) ListReaders(ctx Context) ([]string, error) {
	for range 4 { // the list may grow between the two calls
		n := word()
		c := p.call(p.fn.list, uintptr(ctx), 0, 0, uintptr(unsafe.Pointer(&n[0])))
		if c == NoReadersAvailable {
			return nil, nil
		}
		if c != Success {
			return nil, c
		}
		units := int(getWord(n, p.abi.dword))
		if units <= 0 || units > 1<<20 {
			return nil, nil
		}
		buf := make([]byte, units*p.abi.charSize())
		c = p.call(p.fn.list, uintptr(ctx), 0, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n[0])))
		switch c {
		case Success:
			return p.abi.multiString(buf, int(getWord(n, p.abi.dword))), nil
		case NoReadersAvailable:
			return nil, nil
		case InsufficientBuffer:
			continue
		}
		return nil, c
	}
	return nil, InsufficientBuffer
}

// milliseconds converts a timeout to the DWORD of SCardGetStatusChange.
func milliseconds(d time.Duration) uintptr {
	if d < 0 {
		return 0xFFFFFFFF
	}
	return uintptr(min(d.Milliseconds(), 0xFFFFFFFE))
}

func (p *proc) GetStatusChange(ctx Context, timeout time.Duration, states []ReaderState) error {
	if len(states) == 0 {
		return InvalidValue
	}
	cur, evt, cbAtr, atr, size := p.abi.readerStateLayout()
	arr := make([]byte, size*len(states))
	names := make([][]byte, len(states))
	for i, s := range states {
		names[i] = p.abi.cString(s.Reader)
		r := arr[i*size:]
		putWord(r, p.abi.ptr, uint64(uintptr(unsafe.Pointer(&names[i][0]))))
		putWord(r[cur:], p.abi.dword, uint64(s.CurrentState))
	}
	c := p.call(p.fn.getStatusChange, uintptr(ctx), milliseconds(timeout),
		uintptr(unsafe.Pointer(&arr[0])), uintptr(len(states)))
	runtime.KeepAlive(names)
	if c != Success {
		return c
	}
	for i := range states {
		r := arr[i*size:]
		states[i].EventState = uint32(getWord(r[evt:], p.abi.dword))
		n := min(int(getWord(r[cbAtr:], p.abi.dword)), p.abi.atr)
		states[i].ATR = append(states[i].ATR[:0], r[atr:atr+n]...)
	}
	return nil
}

func (p *proc) Connect(ctx Context, reader string, share, protocols uint32) (Card, uint32, error) {
	name := p.abi.cString(reader)
	h, proto := word(), word()
	c := p.call(p.fn.connect, uintptr(ctx), uintptr(unsafe.Pointer(&name[0])), uintptr(share),
		uintptr(p.abi.protocolsIn(protocols)), uintptr(unsafe.Pointer(&h[0])), uintptr(unsafe.Pointer(&proto[0])))
	if c != Success {
		return 0, 0, c
	}
	return Card(getWord(h, p.abi.handle)), p.abi.protocolOut(uint32(getWord(proto, p.abi.dword))), nil
}

func (p *proc) Reconnect(card Card, share, protocols, initialization uint32) (uint32, error) {
	proto := word()
	c := p.call(p.fn.reconnect, uintptr(card), uintptr(share), uintptr(p.abi.protocolsIn(protocols)),
		uintptr(initialization), uintptr(unsafe.Pointer(&proto[0])))
	return p.abi.protocolOut(uint32(getWord(proto, p.abi.dword))), errOf(c)
}

func (p *proc) Disconnect(card Card, disposition uint32) error {
	return errOf(p.call(p.fn.disconnect, uintptr(card), uintptr(disposition)))
}

func (p *proc) BeginTransaction(card Card) error {
	return errOf(p.call(p.fn.begin, uintptr(card)))
}

func (p *proc) EndTransaction(card Card, disposition uint32) error {
	return errOf(p.call(p.fn.end, uintptr(card), uintptr(disposition)))
}

func (p *proc) Transmit(card Card, send IORequest, apdu, recv []byte) (int, uint32, error) {
	d := p.abi.dword
	pci := make([]byte, 2*p.abi.ioRequestSize()) // send PCI, then receive PCI
	putWord(pci, d, uint64(p.abi.protocolsIn(send.Protocol)))
	putWord(pci[d:], d, uint64(p.abi.ioRequestSize()))
	copy(pci[2*d:], pci[:2*d])
	n := word()
	putWord(n, d, uint64(len(recv)))
	c := p.call(p.fn.transmit, uintptr(card), uintptr(unsafe.Pointer(&pci[0])),
		uintptr(unsafe.Pointer(unsafe.SliceData(apdu))), uintptr(len(apdu)),
		uintptr(unsafe.Pointer(&pci[2*d])), uintptr(unsafe.Pointer(unsafe.SliceData(recv))),
		uintptr(unsafe.Pointer(&n[0])))
	got := int(getWord(n, d))
	if c == Success && got > len(recv) {
		c = InsufficientBuffer
	}
	return got, p.abi.protocolOut(uint32(getWord(pci[2*d:], d))), errOf(c)
}

func (p *proc) Control(card Card, code uint32, in, out []byte) (int, error) {
	n := word()
	c := p.call(p.fn.control, uintptr(card), uintptr(p.abi.controlCode(code)),
		uintptr(unsafe.Pointer(unsafe.SliceData(in))), uintptr(len(in)),
		uintptr(unsafe.Pointer(unsafe.SliceData(out))), uintptr(len(out)), uintptr(unsafe.Pointer(&n[0])))
	got := int(getWord(n, p.abi.dword))
	if c == Success && got > len(out) {
		c = InsufficientBuffer
	}
	if c == Success && p.abi.windows && code == FeatureRequest {
		translateFeatures(out[:got])
	}
	return got, errOf(c)
}

// statusNameUnits bounds the reader name SCardStatus returns.
const statusNameUnits = 512

func (p *proc) Status(card Card) (CardStatus, error) {
	d := p.abi.dword
	name := make([]byte, statusNameUnits*p.abi.charSize())
	atr := make([]byte, max(p.abi.atr, MaxATRSize))
	nameLen, state, proto, atrLen := word(), word(), word(), word()
	putWord(nameLen, d, statusNameUnits)
	putWord(atrLen, d, uint64(len(atr)))
	c := p.call(p.fn.status, uintptr(card), uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&nameLen[0])),
		uintptr(unsafe.Pointer(&state[0])), uintptr(unsafe.Pointer(&proto[0])),
		uintptr(unsafe.Pointer(&atr[0])), uintptr(unsafe.Pointer(&atrLen[0])))
	if c != Success {
		return CardStatus{}, c
	}
	var s CardStatus
	if r := p.abi.multiString(name, int(getWord(nameLen, d))); len(r) > 0 {
		s.Reader = r[0]
	}
	s.State = p.abi.statusState(uint32(getWord(state, d)))
	s.Protocol = p.abi.protocolOut(uint32(getWord(proto, d)))
	s.ATR = atr[:min(int(getWord(atrLen, d)), len(atr))]
	return s, nil
}

func (p *proc) GetAttrib(card Card, id uint32, buf []byte) (int, error) {
	n := word()
	putWord(n, p.abi.dword, uint64(len(buf)))
	c := p.call(p.fn.getAttrib, uintptr(card), uintptr(id), uintptr(unsafe.Pointer(unsafe.SliceData(buf))),
		uintptr(unsafe.Pointer(&n[0])))
	got := int(getWord(n, p.abi.dword))
	if c == Success && got > len(buf) {
		c = InsufficientBuffer
	}
	return got, errOf(c)
}

func (p *proc) SetAttrib(card Card, id uint32, value []byte) error {
	return errOf(p.call(p.fn.setAttrib, uintptr(card), uintptr(id),
		uintptr(unsafe.Pointer(unsafe.SliceData(value))), uintptr(len(value))))
}
