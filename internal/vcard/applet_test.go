package vcard

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// apdu decodes a hex string with optional spaces.
func apdu(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

const (
	selectHello = "00 A4 04 00 0A A0 00 00 00 62 03 01 0C 06 01"
	hexGreeting = "48 65 6C 6C 6F 20 77 6F 72 6C 64 21" // "Hello world!"
)

func TestAppletSession(t *testing.T) {
	// Each step runs on the same applet, in order.
	steps := []struct {
		name, cmd, want string
		reset           bool // power cycle before the command
	}{
		{name: "hello before select", cmd: "00 00 00 00", want: "69 85"},
		{name: "unknown AID", cmd: "00 A4 04 00 05 A0 00 00 00 62", want: "6A 82"},
		{name: "still not selected", cmd: "00 00 00 00", want: "69 85"},
		{name: "select", cmd: selectHello, want: "90 00"},
		{name: "hello", cmd: "00 00 00 00", want: hexGreeting + " 90 00"},
		{name: "hello again", cmd: "00 00 00 00", want: hexGreeting + " 90 00"},
		{name: "hello Le 00", cmd: "00 00 00 00 00", want: hexGreeting + " 90 00"},
		{name: "hello Le exact", cmd: "00 00 00 00 0C", want: hexGreeting + " 90 00"},
		{name: "hello Le short", cmd: "00 00 00 00 05", want: "6C 0C"},
		{name: "hello with data", cmd: "00 00 00 00 01 FF", want: "67 00"},
		{name: "hello P1 P2 ignored", cmd: "00 00 12 34", want: hexGreeting + " 90 00"},
		{name: "unknown AID keeps selection", cmd: "00 A4 04 00 02 A0 00", want: "6A 82"},
		{name: "hello after failed select", cmd: "00 00 00 00", want: hexGreeting + " 90 00"},
		{name: "unknown INS", cmd: "00 B0 00 00 00", want: "6D 00"},
		{name: "select with Le", cmd: selectHello + " 00", want: "90 00"},
		{name: "select no FCI", cmd: "00 A4 04 0C 0A A0 00 00 00 62 03 01 0C 06 01", want: "90 00"},
		{name: "select by file ID", cmd: "00 A4 00 00 02 3F 00", want: "6A 86"},
		{name: "select bad P2", cmd: "00 A4 04 01 0A A0 00 00 00 62 03 01 0C 06 01", want: "6A 86"},
		{name: "power cycle deselects", cmd: "00 00 00 00", want: "69 85", reset: true},
	}
	var a applet
	for _, s := range steps {
		if s.reset {
			a.reset()
		}
		got := a.process(nil, apdu(t, s.cmd))
		if want := apdu(t, s.want); !bytes.Equal(got, want) {
			t.Errorf("%s: %s → % X, want % X", s.name, s.cmd, got, want)
		}
	}
}

func TestAppletErrors(t *testing.T) {
	tests := []struct{ name, cmd, want string }{
		{"too short", "00 00", "67 00"},
		{"three bytes", "00 A4 04", "67 00"},
		{"proprietary class", "80 00 00 00", "6E 00"},
		{"class FF", "FF A4 04 00 00", "6E 00"},
		{"RFU class", "20 00 00 00", "6E 00"},
		{"chaining", "10 00 00 00", "68 84"},
		{"secure messaging", "0C 00 00 00", "68 82"},
		{"logical channel 1", "01 00 00 00", "68 81"},
		{"further interindustry class", "40 00 00 00", "68 81"},
		{"Lc longer than data", "00 A4 04 00 0A A0 00", "67 00"},
		{"Lc shorter than data", "00 A4 04 00 01 A0 00 00", "67 00"},
		{"extended length", "00 A4 04 00 00 00 0A A0 00 00 00 62 03 01 0C 06 01", "67 00"},
	}
	for _, tt := range tests {
		var a applet
		got := a.process(nil, apdu(t, tt.cmd))
		if want := apdu(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: %s → % X, want % X", tt.name, tt.cmd, got, want)
		}
	}
}

func TestProcessAppends(t *testing.T) {
	var a applet
	got := a.process([]byte{0xAA, 0xBB}, apdu(t, selectHello))
	if want := []byte{0xAA, 0xBB, 0x90, 0x00}; !bytes.Equal(got, want) {
		t.Errorf("process appended % X, want % X", got, want)
	}
}

// encode is the inverse of parseCommand.
func (c command) encode() []byte {
	b := []byte{c.cla, c.ins, c.p1, c.p2}
	if len(c.data) > 0 {
		b = append(b, byte(len(c.data)))
		b = append(b, c.data...)
	}
	if c.le > 0 {
		b = append(b, byte(c.le)) // 256 encodes as 00
	}
	return b
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		apdu string
		want command
		ok   bool
	}{
		{"00 A4", command{}, false},
		{"00 B0 01 02", command{ins: 0xB0, p1: 1, p2: 2}, true},
		{"00 B0 00 00 00", command{ins: 0xB0, le: 256}, true},
		{"00 B0 00 00 10", command{ins: 0xB0, le: 16}, true},
		{"00 D6 00 00 02 AA BB", command{ins: 0xD6, data: []byte{0xAA, 0xBB}}, true},
		{"00 A4 04 00 01 AA 00", command{ins: 0xA4, p1: 4, data: []byte{0xAA}, le: 256}, true},
		{"00 A4 04 00 01 AA BB CC", command{}, false},
		{"00 A4 04 00 00 00 01 AA", command{}, false},
	}
	for _, tt := range tests {
		got, ok := parseCommand(apdu(t, tt.apdu))
		if ok != tt.ok || got.cla != tt.want.cla || got.ins != tt.want.ins || got.p1 != tt.want.p1 ||
			got.p2 != tt.want.p2 || !bytes.Equal(got.data, tt.want.data) || got.le != tt.want.le {
			t.Errorf("parseCommand(%s) = %+v, %v; want %+v, %v", tt.apdu, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{selectHello, "00 00 00 00", "00 00 00 00 05", "00 A4 04 00 01 AA 00", "00 A4 04 00 00 00 01"} {
		f.Add(apdu(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := parseCommand(b)
		if !ok {
			return
		}
		if got := c.encode(); !bytes.Equal(got, b) {
			t.Errorf("parseCommand(% X) re-encodes as % X", b, got)
		}
		var a applet
		if r := a.process(nil, b); len(r) < 2 {
			t.Errorf("process(% X) = % X: no status word", b, r)
		}
	})
}
