package scard

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

// These tests run proc, the calls written once for every platform, over a
// fake "C library" in Go that reads and writes argument memory as the
// given ABI lays it out: the macOS and Windows marshalling is exercised
// on any host.

// mem returns n bytes at the address p that a call received.
func mem(p uintptr, n int) []byte {
	return unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&p))), n)
}

// cstr reads a NUL-terminated string of the ABI at p.
func cstr(a abi, p uintptr) string {
	n := 0
	for !bytes.Equal(mem(p+uintptr(n*a.charSize()), a.charSize()), make([]byte, a.charSize())) {
		n++
	}
	return a.multiString(mem(p, (n+1)*a.charSize()), n+1)[0]
}

type fakeC struct {
	a  abi
	fn map[uintptr]func(args []uintptr) uintptr
}

// fakeProc returns a proc whose function addresses 1..15 are fns.
func fakeProc(a abi, fns map[string]func(a abi, args []uintptr) uintptr) *proc {
	f := &fakeC{a: a, fn: map[uintptr]func([]uintptr) uintptr{}}
	p := &proc{name: "fake", abi: a}
	addr := uintptr(1)
	p.fn.load(symbolNames, func(name string) (uintptr, error) {
		if g, ok := fns[name]; ok {
			f.fn[addr] = func(args []uintptr) uintptr { return g(a, args) }
		}
		addr++
		return addr - 1, nil
	})
	p.sys = func(fn uintptr, args ...uintptr) uintptr {
		if g, ok := f.fn[fn]; ok {
			return g(args)
		}
		return uintptr(InternalError)
	}
	return p
}

// testABIs are the 64-bit ABIs: this host's pointers fit them.
var testABIs = []abi{abiLinux64, abiDarwin, abiWindows64,
	func() abi { a := abiWindows64; a.windows = false; return a }()} // Wine

func TestProcMarshalling(t *testing.T) {
	for _, a := range testABIs {
		atr := []byte{0x3B, 0x02, 0x14, 0x50}
		p := fakeProc(a, map[string]func(abi, []uintptr) uintptr{
			"SCardEstablishContext": func(a abi, args []uintptr) uintptr {
				putWord(mem(args[3], a.handle), a.handle, 0x1234)
				return 0
			},
			"SCardListReaders": func(a abi, args []uintptr) uintptr {
				var list []byte
				for _, n := range []string{"Reader Ä 0", "Reader 1"} {
					list = append(list, a.cString(n)...)
				}
				list = append(list, make([]byte, a.charSize())...)
				units := len(list) / a.charSize()
				if args[2] != 0 {
					copy(mem(args[2], len(list)), list)
				}
				putWord(mem(args[3], a.dword), a.dword, uint64(units))
				return 0
			},
			"SCardGetStatusChange": func(a abi, args []uintptr) uintptr {
				cur, evt, cbAtr, atrOff, size := a.readerStateLayout()
				if args[1] != 1500 {
					t.Errorf("%s: timeout %d", a.name, args[1])
				}
				arr := mem(args[2], size*int(args[3]))
				for i := range int(args[3]) {
					r := arr[i*size:]
					name := cstr(a, uintptr(getWord(r, a.ptr)))
					if c := getWord(r[cur:], a.dword); c != uint64(0x10010+i) {
						t.Errorf("%s: reader %q current state %#x", a.name, name, c)
					}
					putWord(r[evt:], a.dword, 0x20022+uint64(len(name)))
					putWord(r[cbAtr:], a.dword, uint64(len(atr)))
					copy(r[atrOff:], atr)
				}
				return 0
			},
			"SCardTransmit": func(a abi, args []uintptr) uintptr {
				d := a.dword
				spci := mem(args[1], 2*d)
				if getWord(spci, d) != uint64(a.protocolsIn(ProtocolRaw)) || getWord(spci[d:], d) != uint64(2*d) {
					t.Errorf("%s: send PCI % x", a.name, spci)
				}
				apdu := mem(args[2], int(args[3]))
				n := mem(args[6], d)
				resp := append(append([]byte{}, apdu...), 0x90, 0x00)
				if getWord(n, d) < uint64(len(resp)) {
					putWord(n, d, uint64(len(resp)))
					return uintptr(InsufficientBuffer)
				}
				copy(mem(args[5], len(resp)), resp)
				putWord(n, d, uint64(len(resp)))
				putWord(mem(args[4], d), d, uint64(a.protocolsIn(ProtocolRaw)))
				return 0
			},
			"SCardControl": func(a abi, args []uintptr) uintptr {
				want := uint32(0x42000D48)
				if a.windows {
					want = 0x313520
				}
				if uint32(args[1]) != want {
					t.Errorf("%s: control code %#x, want %#x", a.name, args[1], want)
				}
				out := []byte{6, 4, 0, 0, 0, 0}
				code := uint32(0x42000D4A)
				if a.windows {
					code = 0x313528
				}
				out[2], out[3], out[4], out[5] = byte(code>>24), byte(code>>16), byte(code>>8), byte(code)
				copy(mem(args[4], len(out)), out)
				putWord(mem(args[6], a.dword), a.dword, uint64(len(out)))
				if a.windows {
					return 0x80100022 // Windows' SCARD_E_UNSUPPORTED_FEATURE would map; success here
				}
				return 0
			},
			"SCardStatus": func(a abi, args []uintptr) uintptr {
				name := append(a.cString("Reader 1"), make([]byte, a.charSize())...)
				copy(mem(args[1], len(name)), name)
				putWord(mem(args[2], a.dword), a.dword, uint64(len(name)/a.charSize()))
				state := uint64(0x34)
				if a.windows {
					state = 5 // SCARD_NEGOTIABLE
				}
				putWord(mem(args[3], a.dword), a.dword, state)
				putWord(mem(args[4], a.dword), a.dword, ProtocolT1)
				copy(mem(args[5], len(atr)), atr)
				putWord(mem(args[6], a.dword), a.dword, uint64(len(atr)))
				return 0
			},
		})
		ctx, err := p.EstablishContext(ScopeSystem)
		if err != nil || ctx != 0x1234 {
			t.Errorf("%s: EstablishContext = %#x, %v", a.name, ctx, err)
		}
		readers, err := p.ListReaders(ctx)
		if err != nil || len(readers) != 2 || readers[0] != "Reader Ä 0" {
			t.Errorf("%s: ListReaders = %q, %v", a.name, readers, err)
		}
		states := []ReaderState{{Reader: "Reader Ä 0", CurrentState: 0x10010}, {Reader: PnPNotification, CurrentState: 0x10011}}
		if err := p.GetStatusChange(ctx, 1500e6, states); err != nil {
			t.Errorf("%s: GetStatusChange: %v", a.name, err)
		}
		if states[0].EventState != 0x20022+uint32(len("Reader Ä 0")) || states[1].EventState != 0x20022+uint32(len(PnPNotification)) || !bytes.Equal(states[0].ATR, atr) {
			t.Errorf("%s: states %+v", a.name, states)
		}
		recv := make([]byte, 16)
		n, proto, err := p.Transmit(1, IORequest{Protocol: ProtocolRaw}, []byte{0, 0xA4, 4, 0}, recv)
		if err != nil || n != 6 || proto != ProtocolRaw || !bytes.Equal(recv[:n], []byte{0, 0xA4, 4, 0, 0x90, 0}) {
			t.Errorf("%s: Transmit = %d %d %v", a.name, n, proto, err)
		}
		if n, _, err := p.Transmit(1, IORequest{Protocol: ProtocolRaw}, []byte{1, 2, 3}, recv[:2]); !errors.Is(err, InsufficientBuffer) || n != 5 {
			t.Errorf("%s: short Transmit = %d %v", a.name, n, err)
		}
		out := make([]byte, 64)
		n, err = p.Control(1, FeatureRequest, nil, out)
		if a.windows {
			if !errors.Is(err, UnsupportedFeature) {
				t.Errorf("%s: Control error %v", a.name, err)
			}
		} else if err != nil || !bytes.Equal(out[:n], []byte{6, 4, 0x42, 0, 0x0D, 0x4A}) {
			t.Errorf("%s: Control = % x %v", a.name, out[:n], err)
		}
		st, err := p.Status(1)
		if err != nil || st.Reader != "Reader 1" || st.State != 0x34 || st.Protocol != ProtocolT1 || !bytes.Equal(st.ATR, atr) {
			t.Errorf("%s: Status = %+v %v", a.name, st, err)
		}
	}
}

// The feature list of a successful Windows control call comes back in
// pcsc-lite's numbering.
func TestProcWindowsFeatures(t *testing.T) {
	p := fakeProc(abiWindows64, map[string]func(abi, []uintptr) uintptr{
		"SCardControl": func(a abi, args []uintptr) uintptr {
			out := []byte{6, 4, 0x00, 0x31, 0x35, 0x28}
			copy(mem(args[4], len(out)), out)
			putWord(mem(args[6], a.dword), a.dword, uint64(len(out)))
			return 0
		},
	})
	out := make([]byte, 64)
	n, err := p.Control(1, FeatureRequest, nil, out)
	if err != nil || !bytes.Equal(out[:n], []byte{6, 4, 0x42, 0x00, 0x0D, 0x4A}) {
		t.Errorf("Control = % x, %v", out[:n], err)
	}
}
