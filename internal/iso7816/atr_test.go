package iso7816

import (
	"bytes"
	"testing"
)

var (
	atrT0  = []byte{0x3b, 0x02, 0x14, 0x50} // cardshare's test card: T=0
	atrYub = []byte{0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0,
		0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40} // a YubiKey 5: T=1 only
)

func TestParseATR(t *testing.T) {
	for _, tc := range []struct {
		atr    []byte
		t0, t1 bool
		tck    bool
	}{
		{atrT0, true, false, false},
		{atrYub, false, true, true},
		// QEMU's default ATR (an Athena card): T=0 then T=1, and T=15.
		{[]byte{0x3b, 0xd5, 0x18, 0xff, 0x80, 0x91, 0xfe, 0x1f, 0xc3, 0x80, 0x73, 0xc8, 0x21, 0x13, 0x08}, true, true, true},
	} {
		a, err := ParseATR(tc.atr)
		if err != nil || a.T0 != tc.t0 || a.T1 != tc.t1 || a.TCK != tc.tck {
			t.Errorf("% x: %+v %v", tc.atr, a, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x3b}, {0x3c, 0}, {0x3b, 0x80}, {0x3b, 0x05, 1, 2}, {0x3b, 0x81, 0x81}} {
		if _, err := ParseATR(bad); err == nil {
			t.Errorf("% x parsed", bad)
		}
	}
}

func TestAddT0(t *testing.T) {
	if out, rw := AddT0(atrT0); rw || !bytes.Equal(out, atrT0) {
		t.Errorf("T=0 card: % x", out)
	}
	// The YubiKey's ATR gains a T=0 group in front.
	want := []byte{0x3b, 0xfd, 0x13, 0x00, 0x00, 0x80, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0,
		0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79}
	var tck byte
	for _, b := range want[1:] {
		tck ^= b
	}
	want = append(want, tck)
	out, rw := AddT0(atrYub)
	if !rw || !bytes.Equal(out, want) {
		t.Fatalf("got  % x\nwant % x", out, want)
	}
	// TA2 (specific mode T=1) is dropped: 3B 80 91 81 01 → TD1=91 (TA2, TD2).
	spec := []byte{0x3b, 0x80, 0x91, 0x81, 0x01, 0x01}
	spec[len(spec)-1] = 0x80 ^ 0x91 ^ 0x81 ^ 0x01
	out, rw = AddT0(spec)
	// 3B 80 | TD1'=80 | TD2'=81 (TD1 without TA2) | TD3=01 | TCK
	if a, err := ParseATR(out); !rw || err != nil || !a.T0 || len(out) != len(spec) || out[3] != 0x81 || out[4] != 0x01 {
		t.Fatalf("specific mode: % x %+v %v", out, a, err)
	}
}

// FuzzAddT0: whatever the ATR, the rewritten one parses, offers T=0, keeps
// the historical bytes and fits MaxATR.
func FuzzAddT0(f *testing.F) {
	f.Add(atrT0)
	f.Add(atrYub)
	f.Add([]byte{0x3b, 0x80, 0x91, 0x81, 0x01, 0x91})
	f.Fuzz(func(t *testing.T, atr []byte) {
		out, rw := AddT0(atr)
		if !rw {
			if !bytes.Equal(out, atr) {
				t.Fatal("changed without saying so")
			}
			return
		}
		a, err := ParseATR(out)
		if err != nil || !a.T0 || len(out) > MaxATR {
			t.Fatalf("% x → % x: %+v %v", atr, out, a, err)
		}
		in, _ := ParseATR(atr)
		if !bytes.Equal(out[a.Hist:a.Hist+a.K], atr[in.Hist:in.Hist+in.K]) {
			t.Fatal("historical bytes changed")
		}
	})
}
