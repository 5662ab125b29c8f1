package vscard

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qemuInit is the Init QEMU 7.2 sends, as captured from a real
// qemu-system-x86_64 7.2.22 (scripts/qemu-ccid.sh): type 1, reader id
// 0xffffffff, 12 bytes, "VSCD", version 2, one capability word 0.
const qemuInit = "00000001 ffffffff 0000000c 56534344 00000002 00000000"

func TestQEMUInit(t *testing.T) {
	b := unhex(t, qemuInit)
	m, err := NewReader(bytes.NewReader(b)).Next()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != Init || m.ReaderID != UndefinedReaderID || len(m.Payload) != 12 {
		t.Fatalf("got %v reader %#x len %d", m.Type, m.ReaderID, len(m.Payload))
	}
	p, err := ParseInit(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckMagic(); err != nil {
		t.Fatal(err)
	}
	if p.Version != Version || len(p.Capabilities) != 1 || p.Capabilities[0] != 0 {
		t.Fatalf("got %+v", p)
	}
	// Ours is byte for byte QEMU's.
	if got := AppendMessage(nil, Init, UndefinedReaderID, NewInit().Append(nil)); !bytes.Equal(got, b) {
		t.Fatalf("our Init %x, QEMU's %x", got, b)
	}
}

func TestMessages(t *testing.T) {
	for _, tc := range []struct {
		typ     Type
		id      uint32
		payload []byte
		wire    string
	}{
		{APDU, 0, []byte{0, 0xa4, 4, 0}, "00000007 00000000 00000004 00a40400"},
		{ATR, 0, []byte{0x3b, 0x02, 0x14, 0x50}, "00000005 00000000 00000004 3b021450"},
		{CardRemove, 0, nil, "00000006 00000000 00000000"},
		{ReaderAdd, 0, []byte("R"), "00000003 00000000 00000001 52"},
		{ReaderRemove, 0, nil, "00000004 00000000 00000000"},
		{Error, 0, AppendError(nil, Success), "00000002 00000000 00000004 00000000"},
		{Flush, 0, nil, "00000008 00000000 00000000"},
		{FlushComplete, 0, nil, "00000009 00000000 00000000"},
	} {
		want := unhex(t, tc.wire)
		got := AppendMessage(nil, tc.typ, tc.id, tc.payload)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: encoded %x, want %x", tc.typ, got, want)
		}
		m, err := NewReader(bytes.NewReader(want)).Next()
		if err != nil || m.Type != tc.typ || m.ReaderID != tc.id || !bytes.Equal(m.Payload, tc.payload) {
			t.Errorf("%v: decoded %+v, %v", tc.typ, m, err)
		}
	}
}

func TestReaderBounds(t *testing.T) {
	// A hostile length is refused before any payload is read or allocated.
	huge := unhex(t, "00000007 00000000 7fffffff")
	r := NewReader(io.MultiReader(bytes.NewReader(huge), neverReader{t}))
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v, want ErrTooLong", err)
	}
	// MaxPayload itself passes.
	big := AppendMessage(nil, APDU, 0, make([]byte, MaxPayload))
	if m, err := NewReader(bytes.NewReader(big)).Next(); err != nil || len(m.Payload) != MaxPayload {
		t.Fatalf("MaxPayload: %v", err)
	}
	// EOF between messages is io.EOF; inside one, ErrUnexpectedEOF.
	if _, err := NewReader(bytes.NewReader(nil)).Next(); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
	short := unhex(t, "00000007 00000000 00000004 00a4")
	if _, err := NewReader(bytes.NewReader(short)).Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short payload: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(short[:5])).Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short header: %v", err)
	}
}

// neverReader fails the test if read: nothing after a refused header may be
// consumed.
type neverReader struct{ t *testing.T }

func (n neverReader) Read([]byte) (int, error) {
	n.t.Error("read past a refused header")
	return 0, io.EOF
}

func TestInitAndError(t *testing.T) {
	bad := InitPayload{Magic: [4]byte{'S', 'S', 'H', '-'}, Version: 2}
	if err := bad.CheckMagic(); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	for _, n := range []int{0, 4, 7, 9, 13} {
		if _, err := ParseInit(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Init of %d bytes: %v", n, err)
		}
	}
	if p, err := ParseInit(unhex(t, "56534344 00000002")); err != nil || len(p.Capabilities) != 0 {
		t.Errorf("Init without capabilities: %+v %v", p, err)
	}
	for _, n := range []int{0, 3, 5} {
		if _, err := ParseError(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Error of %d bytes: %v", n, err)
		}
	}
	if c, err := ParseError(AppendError(nil, CannotAddMoreReaders)); err != nil || c != CannotAddMoreReaders {
		t.Errorf("Error: %v %v", c, err)
	}
	if Type(42).String() != "Type(42)" || APDU.String() != "APDU" || ErrorCode(9).String() != "error code 9" {
		t.Error("names")
	}
}
