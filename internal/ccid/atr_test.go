package ccid

import (
	"bytes"
	"testing"
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
		a, err := parseATR(tc.atr)
		if err != nil || a.t0 != tc.t0 || a.t1 != tc.t1 || a.tck != tc.tck {
			t.Errorf("% x: %+v %v", tc.atr, a, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x3b}, {0x3c, 0}, {0x3b, 0x80}, {0x3b, 0x05, 1, 2}, {0x3b, 0x81, 0x81}} {
		if _, err := parseATR(bad); err == nil {
			t.Errorf("% x parsed", bad)
		}
	}
}

func TestGuestATR(t *testing.T) {
	// A T=0 card and T=1 with x-t1-support pass unchanged.
	if out, rw := guestATR(atrT0, false); rw || !bytes.Equal(out, atrT0) {
		t.Errorf("T=0 card: % x", out)
	}
	if out, rw := guestATR(atrYub, true); rw || !bytes.Equal(out, atrYub) {
		t.Errorf("T=1 reader: % x", out)
	}
	// The YubiKey's ATR gains a T=0 group in front.
	want := []byte{0x3b, 0xfd, 0x13, 0x00, 0x00, 0x80, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0,
		0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79}
	var tck byte
	for _, b := range want[1:] {
		tck ^= b
	}
	want = append(want, tck)
	out, rw := guestATR(atrYub, false)
	if !rw || !bytes.Equal(out, want) {
		t.Fatalf("got  % x\nwant % x", out, want)
	}
	// TA2 (specific mode T=1) is dropped: 3B 80 91 81 01 → TD1=91 (TA2, TD2).
	spec := []byte{0x3b, 0x80, 0x91, 0x81, 0x01, 0x01}
	spec[len(spec)-1] = 0x80 ^ 0x91 ^ 0x81 ^ 0x01
	out, rw = guestATR(spec, false)
	// 3B 80 | TD1'=80 | TD2'=81 (TD1 without TA2) | TD3=01 | TCK
	if a, err := parseATR(out); !rw || err != nil || !a.t0 || len(out) != len(spec) || out[3] != 0x81 || out[4] != 0x01 {
		t.Fatalf("specific mode: % x %+v %v", out, a, err)
	}
}

func TestQEMUTakesATR(t *testing.T) {
	for _, tc := range []struct {
		atr  []byte
		want bool
	}{
		{atrT0, true},
		{atrYub, true},
		// Refused by QEMU 7.2 in the real rig: after TD1 (01) it reads 'c'
		// (0x63) as TD, counts TA/TB/TC that are not there, and finds the
		// ATR one byte short.
		{atrT1Only, false},
		{[]byte{0x3b}, false},
		{make([]byte, 41), false},
	} {
		if got := qemuTakesATR(tc.atr); got != tc.want {
			t.Errorf("% x: %v", tc.atr, got)
		}
	}
	out, padded := forQEMU(atrT1Only)
	if !padded || !qemuTakesATR(out) || !bytes.Equal(out[:len(atrT1Only)], atrT1Only) || len(out) != len(atrT1Only)+1 {
		t.Fatalf("padded % x", out)
	}
	if a, err := parseATR(out); err != nil || !a.t1 {
		t.Fatalf("padded ATR parses as %+v, %v", a, err)
	}
	rw, _ := guestATR(atrT1Only, false)
	if _, padded := forQEMU(rw); padded {
		t.Fatal("the rewritten ATR needs padding")
	}
}

// FuzzGuestATR: whatever the host's ATR, the guest's parses, offers T=0
// when rewritten, keeps the historical bytes and fits QEMU's limit.
func FuzzGuestATR(f *testing.F) {
	f.Add(atrT0)
	f.Add(atrYub)
	f.Add([]byte{0x3b, 0x80, 0x91, 0x81, 0x01, 0x91})
	f.Fuzz(func(t *testing.T, atr []byte) {
		if p, _ := forQEMU(atr); len(atr) <= maxQEMUATR && len(atr) >= 2 && (atr[0] == 0x3b || atr[0] == 0x3f) && !qemuTakesATR(p) {
			t.Fatalf("% x still refused after padding", atr)
		}
		out, rw := guestATR(atr, false)
		if !rw {
			if !bytes.Equal(out, atr) {
				t.Fatal("changed without saying so")
			}
			return
		}
		a, err := parseATR(out)
		if err != nil || !a.t0 || len(out) > maxATR {
			t.Fatalf("% x → % x: %+v %v", atr, out, a, err)
		}
		in, _ := parseATR(atr)
		if !bytes.Equal(out[a.hist:a.hist+a.k], atr[in.hist:in.hist+in.k]) {
			t.Fatal("historical bytes changed")
		}
	})
}
