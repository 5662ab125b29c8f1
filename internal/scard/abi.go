package scard

import (
	"encoding/binary"
	"unicode/utf16"
)

// abi describes how a PC/SC library lays out its types: what the calls in
// proc.go need to build arguments and read results. The values for each
// platform are below, each from its header.
type abi struct {
	name   string
	ptr    int  // sizeof(void *)
	dword  int  // sizeof(DWORD): every DWORD argument, out parameter and struct field
	handle int  // sizeof(SCARDCONTEXT) and sizeof(SCARDHANDLE)
	atr    int  // rgbAtr[] of SCARD_READERSTATE
	packed bool // structs are #pragma pack(1)
	wide   bool // strings are UTF-16 (the W functions)
	// windows translates pcsc-lite's numbering to Windows' and back
	// (winabi.go): error codes, SCardStatus states, control codes and
	// SCARD_PROTOCOL_RAW. False under Wine, which passes pcsc-lite's
	// values through.
	windows bool
}

var (
	// abiLinux64 is pcsc-lite on an LP64 Unix: DWORD and LONG are
	// unsigned long and long (pcsc-lite 2.5.1 src/PCSC/wintypes.h:90-92;
	// SCARDCONTEXT and SCARDHANDLE are LONG, src/PCSC/pcsclite.h.in:52-55);
	// SCARD_READERSTATE is szReader, pvUserData, dwCurrentState,
	// dwEventState, cbAtr, rgbAtr[MAX_ATR_SIZE = 33] with natural
	// alignment (pcsclite.h.in:59-76): 80 bytes.
	abiLinux64 = abi{name: "pcsc-lite LP64", ptr: 8, dword: 8, handle: 8, atr: 33}
	// abiLinux32 is pcsc-lite on an ILP32 Unix (386, arm): 56 bytes.
	abiLinux32 = abi{name: "pcsc-lite ILP32", ptr: 4, dword: 4, handle: 4, atr: 33}
	// abiDarwin is Apple's PCSC.framework. Apple's own pcsclite.h
	// (SmartCardServices, src/PCSC/pcsclite.h, the header of the framework)
	// has SCARDCONTEXT and SCARDHANDLE as int32_t, SCARD_READERSTATE with
	// uint32_t dwCurrentState, dwEventState and cbAtr and rgbAtr[33], and
	// SCARD_IO_REQUEST as two uint32_t, all under #pragma pack(1):
	// SCARD_READERSTATE is 8+8+4+4+4+33 = 61 bytes on arm64 and x86-64, as
	// Wine lays it out for macOS (dlls/winscard/unixlib.c, struct
	// reader_state_macos) and as pcsc-lite's own header does with __APPLE__
	// (src/PCSC/pcsclite.h.in:61-93, wintypes.h:46-68).
	abiDarwin = abi{name: "PCSC.framework", ptr: 8, dword: 4, handle: 4, atr: 33, packed: true}
	// abiWindows64 is winscard.dll on x64 and arm64: DWORD is 32 bits,
	// SCARDCONTEXT and SCARDHANDLE are ULONG_PTR, SCARD_READERSTATEW is
	// szReader, pvUserData, dwCurrentState, dwEventState, cbAtr,
	// rgbAtr[36] (winscard.h; "SCARD_READERSTATEW structure",
	// learn.microsoft.com/windows/win32/api/winscard/ns-winscard-scard_readerstatew):
	// 64 bytes.
	abiWindows64 = abi{name: "winscard.dll", ptr: 8, dword: 4, handle: 8, atr: 36, wide: true, windows: true}
	// abiWindows32 is winscard.dll on 386: 56 bytes.
	abiWindows32 = abi{name: "winscard.dll", ptr: 4, dword: 4, handle: 4, atr: 36, wide: true, windows: true}
)

// readerStateLayout returns the offsets of dwCurrentState, dwEventState,
// cbAtr and rgbAtr in SCARD_READERSTATE, and its size. szReader is at 0
// and pvUserData at ptr.
func (a abi) readerStateLayout() (cur, evt, cbAtr, atr, size int) {
	cur = 2 * a.ptr
	evt = cur + a.dword
	cbAtr = evt + a.dword
	atr = cbAtr + a.dword
	size = atr + a.atr
	if !a.packed {
		align := max(a.ptr, a.dword)
		size = (size + align - 1) / align * align
	}
	return cur, evt, cbAtr, atr, size
}

// ioRequestSize is sizeof(SCARD_IO_REQUEST): two DWORDs (pcsclite.h.in:78-84,
// unsigned long on Linux; winscard.h on Windows).
func (a abi) ioRequestSize() int { return 2 * a.dword }

var ne = binary.NativeEndian

// putWord stores v in the size bytes of b, in host byte order.
func putWord(b []byte, size int, v uint64) {
	if size == 8 {
		ne.PutUint64(b, v)
		return
	}
	ne.PutUint32(b, uint32(v))
}

// getWord reads size bytes of b in host byte order.
func getWord(b []byte, size int) uint64 {
	if size == 8 {
		return ne.Uint64(b)
	}
	return uint64(ne.Uint32(b))
}

// charSize is the size of one string unit.
func (a abi) charSize() int {
	if a.wide {
		return 2
	}
	return 1
}

// cString encodes s as a NUL-terminated string of the ABI. It always
// allocates with a size known only at run time, so that the result lives
// on the heap, where it does not move while C code holds its address.
func (a abi) cString(s string) []byte {
	if !a.wide {
		b := make([]byte, len(s)+1)
		copy(b, s)
		return b
	}
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*(len(u)+1))
	for i, c := range u {
		ne.PutUint16(b[2*i:], c)
	}
	return b
}

// multiString decodes a multi-string (strings each ending in NUL, then a
// final NUL) of n units from b.
func (a abi) multiString(b []byte, n int) []string {
	var out []string
	if !a.wide {
		b = b[:min(n, len(b))]
		for len(b) > 0 && b[0] != 0 {
			i := 0
			for i < len(b) && b[i] != 0 {
				i++
			}
			out = append(out, string(b[:i]))
			if i == len(b) {
				break
			}
			b = b[i+1:]
		}
		return out
	}
	u := make([]uint16, min(n, len(b)/2))
	for i := range u {
		u[i] = ne.Uint16(b[2*i:])
	}
	for len(u) > 0 && u[0] != 0 {
		i := 0
		for i < len(u) && u[i] != 0 {
			i++
		}
		out = append(out, string(utf16.Decode(u[:i])))
		if i == len(u) {
			break
		}
		u = u[i+1:]
	}
	return out
}

// code translates a LONG a call returned into pcsc-lite's numbering.
func (a abi) code(r uintptr) Code {
	c := Code(uint32(r)) // LONG is 32 bits on Windows and macOS; on LP64 Linux the values fit
	if a.windows {
		return windowsCode(c)
	}
	return c
}

// statusState translates SCardStatus's pdwState to pcsc-lite's bit field.
func (a abi) statusState(v uint32) uint32 {
	if a.windows {
		return windowsStatusState(v)
	}
	return v
}

// controlCode translates a control code from pcsc-lite's numbering.
func (a abi) controlCode(c uint32) uint32 {
	if a.windows {
		return windowsControlCode(c)
	}
	return c
}

// protocolsIn translates protocol bits for the library; protocolOut back.
func (a abi) protocolsIn(p uint32) uint32 {
	if a.windows {
		return windowsProtocolsIn(p)
	}
	return p
}

func (a abi) protocolOut(p uint32) uint32 {
	if a.windows {
		return windowsProtocolOut(p)
	}
	return p
}
