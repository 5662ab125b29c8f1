package scard

import (
	"bytes"
	"slices"
	"testing"
)

// TestReaderStateLayouts checks SCARD_READERSTATE and SCARD_IO_REQUEST for
// every ABI. The LP64 Linux row is what gcc says for Debian 12's
// /usr/include/PCSC/pcsclite.h (offsetof probe: 16 24 32 40, sizeof 80,
// SCARD_IO_REQUEST 16); the macOS row what it says for the same header
// with __APPLE__ defined (16 20 24 28, sizeof 61), which is also what
// Apple's own header gives (SmartCardServices src/PCSC/pcsclite.h: packed,
// uint32_t fields), with its SCARD_IO_REQUEST of two uint32_t; the Windows rows
// follow SCARD_READERSTATEW (rgbAtr[36]) with natural alignment.
func TestReaderStateLayouts(t *testing.T) {
	for _, tc := range []struct {
		abi                        abi
		cur, evt, cbAtr, atr, size int
		io                         int
	}{
		{abiLinux64, 16, 24, 32, 40, 80, 16},
		{abiLinux32, 8, 12, 16, 20, 56, 8},
		{abiDarwin, 16, 20, 24, 28, 61, 8},
		{abiWindows64, 16, 20, 24, 28, 64, 8},
		{abiWindows32, 8, 12, 16, 20, 56, 8},
	} {
		cur, evt, cbAtr, atr, size := tc.abi.readerStateLayout()
		got := []int{cur, evt, cbAtr, atr, size, tc.abi.ioRequestSize()}
		want := []int{tc.cur, tc.evt, tc.cbAtr, tc.atr, tc.size, tc.io}
		if !slices.Equal(got, want) {
			t.Errorf("%s (ptr %d): layout %v, want %v", tc.abi.name, tc.abi.ptr, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	for _, a := range []abi{abiLinux64, abiWindows64} {
		names := []string{"Virtual PCD 00 00", "Lecteur « 1 » 0", "x"}
		var multi []byte
		for _, n := range names {
			multi = append(multi, a.cString(n)...)
		}
		multi = append(multi, make([]byte, a.charSize())...)
		if got := a.multiString(multi, len(multi)/a.charSize()); !slices.Equal(got, names) {
			t.Errorf("%s: multiString = %q, want %q", a.name, got, names)
		}
		// A list cut short (no final NUL) still yields what it has.
		if got := a.multiString(multi[:len(multi)-2*a.charSize()], 1<<20); !slices.Equal(got, names) {
			t.Errorf("%s: truncated multiString = %q", a.name, got)
		}
		if got := a.multiString(nil, 0); got != nil {
			t.Errorf("%s: empty multiString = %q", a.name, got)
		}
	}
	if got := abiWindows64.cString("A€"); !bytes.Equal(got, []byte{'A', 0, 0xAC, 0x20, 0, 0}) {
		t.Errorf("UTF-16 cString = % x", got)
	}
}

func TestWindowsCodes(t *testing.T) {
	for _, tc := range []struct{ in, want Code }{
		{0, Success},
		{0x80100022, UnsupportedFeature}, // Windows SCARD_E_UNSUPPORTED_FEATURE
		{0x8010001F, UnsupportedFeature}, // Windows SCARD_E_UNEXPECTED: pcsc-lite has one value for both
		{6, InvalidHandle},
		{87, InvalidParameter},
		{122, InsufficientBuffer},
		{234, InsufficientBuffer},
		{1, UnsupportedFeature},
		{50, UnsupportedFeature},
		{5, UnknownError}, // ERROR_ACCESS_DENIED: no PC/SC meaning
		{0x8010002E, NoReadersAvailable},
		{0x8010001D, NoService},
		{0x8010001E, ServiceStopped},
		{0x80100069, RemovedCard},
	} {
		if got := windowsCode(tc.in); got != tc.want {
			t.Errorf("windowsCode(%#x) = %#x, want %#x", uint32(tc.in), uint32(got), uint32(tc.want))
		}
	}
	if got := abiLinux64.code(0x80100022); got != 0x80100022 {
		t.Errorf("pcsc-lite codes must pass unchanged, got %#x", uint32(got))
	}
	if got := abiLinux64.code(uintptr(0x8010001D)); got != NoService {
		t.Errorf("a 64-bit LONG: got %#x", uint32(got))
	}
}

func TestWindowsStatusStates(t *testing.T) {
	for in, want := range map[uint32]uint32{
		0: StatusUnknown, 1: StatusAbsent, 2: StatusPresent, 3: 0x0C, 4: 0x14, 5: 0x34, 6: 0x54, 7: StatusUnknown,
	} {
		if got := windowsStatusState(in); got != want {
			t.Errorf("windowsStatusState(%d) = %#x, want %#x", in, got, want)
		}
	}
	if abiLinux64.statusState(0x34) != 0x34 {
		t.Error("pcsc-lite states must pass unchanged")
	}
}

func TestControlCodes(t *testing.T) {
	for pcsc, win := range map[uint32]uint32{
		0x42000000 + 3400: 0x00313520, // CM_IOCTL_GET_FEATURE_REQUEST: CTL_CODE(0x31, 3400, 0, 0)
		0x42000000 + 1:    0x00310004,
		0x42000000:        0x00310000,
		0x42000FFF:        0x00313FFC,
	} {
		if got := windowsControlCode(pcsc); got != win {
			t.Errorf("windowsControlCode(%#x) = %#x, want %#x", pcsc, got, win)
		}
		if got := pcscControlCode(win); got != pcsc {
			t.Errorf("pcscControlCode(%#x) = %#x, want %#x", win, got, pcsc)
		}
	}
	// Codes outside either range pass unchanged.
	for _, c := range []uint32{0x42001000, 0x00220000, 0x12345678, 0x00313521} {
		if windowsControlCode(c) != c || pcscControlCode(c) != c {
			t.Errorf("code %#x changed", c)
		}
	}
	// A feature list: FEATURE_VERIFY_PIN_DIRECT (6) and
	// FEATURE_MODIFY_PIN_DIRECT (7) with Windows codes, then a bad TLV.
	b := []byte{6, 4, 0x00, 0x31, 0x35, 0x28, 7, 4, 0x00, 0x31, 0x35, 0x2C, 9, 2, 1, 2}
	translateFeatures(b)
	want := []byte{6, 4, 0x42, 0x00, 0x0D, 0x4A, 7, 4, 0x42, 0x00, 0x0D, 0x4B, 9, 2, 1, 2}
	if !bytes.Equal(b, want) {
		t.Errorf("translateFeatures = % x, want % x", b, want)
	}
}

func TestProtocols(t *testing.T) {
	if got := windowsProtocolsIn(ProtocolT0 | ProtocolRaw); got != ProtocolT0|0x10000 {
		t.Errorf("in: %#x", got)
	}
	if got := windowsProtocolOut(0x10000); got != ProtocolRaw {
		t.Errorf("out: %#x", got)
	}
	if got := windowsProtocolOut(ProtocolT1); got != ProtocolT1 {
		t.Errorf("out T1: %#x", got)
	}
}

func TestCodeError(t *testing.T) {
	if got := NoService.Error(); got != "scard: SCARD_E_NO_SERVICE (0x8010001d)" {
		t.Errorf("Error() = %q", got)
	}
	if CodeOf(nil) != Success || CodeOf(RemovedCard) != RemovedCard {
		t.Error("CodeOf")
	}
}

func TestSymbolNames(t *testing.T) {
	for i, n := range symbolNames {
		if len(n) < 6 || n[:5] != "SCard" {
			t.Errorf("symbol %d: %q", i, n)
		}
	}
}
