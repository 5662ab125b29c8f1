package scard

// This file translates between pcsc-lite's numbering, which Library
// speaks, and Windows' winscard.dll. It has no build tag, so that the
// table is tested on every host.
//
// | what | pcsc-lite | Windows | source |
// |---|---|---|---|
// | SCARD_E_UNSUPPORTED_FEATURE | 0x8010001F (the value of SCARD_E_UNEXPECTED) | 0x80100022; 0x8010001F is SCARD_E_UNEXPECTED | pcsc-lite 2.5.1 src/PCSC/pcsclite.h.in:169-177 (the Windows value commented out); "Smart Card Return Values", learn.microsoft.com/windows/win32/secauthn/authentication-return-values |
// | invalid handle | SCARD_E_INVALID_HANDLE 0x80100003 | also ERROR_INVALID_HANDLE (6), e.g. Wine's winscard.c for a handle without its magic | winerror.h; wine dlls/winscard/winscard.c |
// | buffer too small | SCARD_E_INSUFFICIENT_BUFFER | also ERROR_INSUFFICIENT_BUFFER (122), ERROR_MORE_DATA (234) | winerror.h; SCardGetAttrib documentation |
// | unsupported control code | SCARD_E_UNSUPPORTED_FEATURE | ERROR_INVALID_FUNCTION (1), ERROR_NOT_SUPPORTED (50) from the reader driver | winerror.h; "Smart Card Driver IOCTLs" |
// | bad parameter | SCARD_E_INVALID_PARAMETER | also ERROR_INVALID_PARAMETER (87) | winerror.h |
// | SCardStatus pdwState | bit field: UNKNOWN 0x1, ABSENT 0x2, PRESENT 0x4, SWALLOWED 0x8, POWERED 0x10, NEGOTIABLE 0x20, SPECIFIC 0x40 | enumeration: UNKNOWN 0 … SPECIFIC 6 | pcsclite.h.in:257-263; winsmcrd.h, "SCardStatusW function" and "Smart Card Reader States" (learn.microsoft.com) |
// | ATR buffer of SCARD_READERSTATE | rgbAtr[33] | rgbAtr[36] | pcsclite.h.in:59,74; winscard.h SCARD_READERSTATEW |
// | control codes | SCARD_CTL_CODE(c) = 0x42000000 + c | CTL_CODE(FILE_DEVICE_SMARTCARD = 0x31, c, METHOD_BUFFERED = 0, FILE_ANY_ACCESS = 0) = 0x310000 + 4c | pcsc-lite src/PCSC/reader.h:118; winsmcrd.h SCARD_CTL_CODE, winioctl.h CTL_CODE |
// | SCARD_PROTOCOL_RAW | 0x4 | 0x10000 | pcsclite.h.in:243; winsmcrd.h |
// | reader names | "Name 00 00" (pcscd adds the slot numbers) | "Name 0" (the Smart Card service adds an index) | pcsc-lite readerfactory.c RFAddReader; learn.microsoft.com "Smart card reader names" |
//
// Reader names are not translated: the guest sees the host's names, and
// reader policies match those.
//
// Wine's winscard.dll (Wine 8+, dlls/winscard) calls the host's
// libpcsclite and passes its values through unchanged: the status bit
// field, pcsc-lite's error codes and control codes. The Windows backend
// therefore translates only on real Windows (abi.windows is false under
// Wine, detected by ntdll's wine_get_version export).

const (
	winUnsupportedFeature   Code = 0x80100022 // Windows SCARD_E_UNSUPPORTED_FEATURE
	winErrorInvalidFunction Code = 1          // ERROR_INVALID_FUNCTION
	winErrorInvalidHandle   Code = 6          // ERROR_INVALID_HANDLE
	winErrorNotSupported    Code = 50         // ERROR_NOT_SUPPORTED
	winErrorInvalidParam    Code = 87         // ERROR_INVALID_PARAMETER
	winErrorInsufficientBuf Code = 122        // ERROR_INSUFFICIENT_BUFFER
	winErrorMoreData        Code = 234        // ERROR_MORE_DATA

	winProtocolRaw = 0x00010000 // Windows SCARD_PROTOCOL_RAW (winsmcrd.h)

	// pcsc-lite's SCARD_CTL_CODE base (reader.h:118) and Windows'
	// CTL_CODE(FILE_DEVICE_SMARTCARD, 0, METHOD_BUFFERED, FILE_ANY_ACCESS).
	pcscCtlBase = 0x42000000
	winCtlBase  = 0x31 << 16
	// ctlFunctionMax is the largest function of a CTL_CODE: 12 bits
	// (bits 2-13 of the code, winioctl.h).
	ctlFunctionMax = 0xFFF
)

// windowsCode maps a return code of winscard.dll to pcsc-lite's.
func windowsCode(c Code) Code {
	switch c {
	case winUnsupportedFeature, winErrorInvalidFunction, winErrorNotSupported:
		return UnsupportedFeature
	case winErrorInvalidHandle:
		return InvalidHandle
	case winErrorInvalidParam:
		return InvalidParameter
	case winErrorInsufficientBuf, winErrorMoreData:
		return InsufficientBuffer
	}
	if c != Success && c>>16 != 0x8010 {
		// Any other Win32 error: not a PC/SC code a guest knows.
		return UnknownError
	}
	return c
}

// windowsStatusStates maps Windows' SCardStatus enumeration to pcsc-lite's
// bit field, with the states each implies set as pcscd sets them
// (pcsc-lite src/eventhandler.c: a powered card is PRESENT|POWERED|NEGOTIABLE).
var windowsStatusStates = [...]uint32{
	0: StatusUnknown,                                    // SCARD_UNKNOWN
	1: StatusAbsent,                                     // SCARD_ABSENT
	2: StatusPresent,                                    // SCARD_PRESENT
	3: StatusPresent | StatusSwallowed,                  // SCARD_SWALLOWED
	4: StatusPresent | StatusPowered,                    // SCARD_POWERED
	5: StatusPresent | StatusPowered | StatusNegotiable, // SCARD_NEGOTIABLE
	6: StatusPresent | StatusPowered | StatusSpecific,   // SCARD_SPECIFIC
}

func windowsStatusState(v uint32) uint32 {
	if int(v) < len(windowsStatusStates) {
		return windowsStatusStates[v]
	}
	return StatusUnknown
}

// windowsControlCode maps pcsc-lite's SCARD_CTL_CODE(c) to Windows'.
// Codes outside pcsc-lite's range pass unchanged: they are Windows codes
// already (a guest that learnt them from a feature list).
func windowsControlCode(c uint32) uint32 {
	if f := c - pcscCtlBase; c >= pcscCtlBase && f <= ctlFunctionMax {
		return winCtlBase | f<<2
	}
	return c
}

// pcscControlCode maps a Windows SCARD_CTL_CODE back to pcsc-lite's.
func pcscControlCode(c uint32) uint32 {
	if c&^(ctlFunctionMax<<2) == winCtlBase {
		return pcscCtlBase + (c>>2)&ctlFunctionMax
	}
	return c
}

// translateFeatures rewrites, in place, the control codes of a reply to
// CM_IOCTL_GET_FEATURE_REQUEST (PC/SC part 10: TLVs of a 1-byte tag, a
// 1-byte length 4 and a big-endian control code) from Windows' numbering
// to pcsc-lite's, so that a guest can send them back through Control. It
// stops at the first malformed TLV.
func translateFeatures(b []byte) {
	for len(b) >= 2 {
		n := int(b[1])
		if n != 4 || len(b) < 6 {
			return
		}
		v := uint32(b[2])<<24 | uint32(b[3])<<16 | uint32(b[4])<<8 | uint32(b[5])
		v = pcscControlCode(v)
		b[2], b[3], b[4], b[5] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		b = b[6:]
	}
}

// FeatureRequest is CM_IOCTL_GET_FEATURE_REQUEST, SCARD_CTL_CODE(3400)
// (pcsc-lite src/PCSC/reader.h:123).
const FeatureRequest = pcscCtlBase + 3400

func windowsProtocolsIn(p uint32) uint32 {
	if p&ProtocolRaw != 0 {
		p = p&^ProtocolRaw | winProtocolRaw
	}
	return p
}

func windowsProtocolOut(p uint32) uint32 {
	if p&winProtocolRaw != 0 {
		p = p&^winProtocolRaw | ProtocolRaw
	}
	return p
}
