package ccid

import (
	"bytes"
	"testing"

	"github.com/cardshare/cardshare/internal/iso7816"
)

func TestGuestATR(t *testing.T) {
	// T=1 with x-t1-support passes unchanged; without, T=0 is added.
	if out, rw := guestATR(atrYub, true); rw || !bytes.Equal(out, atrYub) {
		t.Errorf("T=1 reader: % x", out)
	}
	if out, rw := guestATR(atrYub, false); !rw || len(out) != len(atrYub)+1 {
		t.Errorf("T=0 reader: % x", out)
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
	if a, err := iso7816.ParseATR(out); err != nil || !a.T1 {
		t.Fatalf("padded ATR parses as %+v, %v", a, err)
	}
	rw, _ := guestATR(atrT1Only, false)
	if _, padded := forQEMU(rw); padded {
		t.Fatal("the rewritten ATR needs padding")
	}
}

// FuzzForQEMU: every well-formed start of an ATR QEMU can take is taken
// after padding, and the ATR itself is kept in front.
func FuzzForQEMU(f *testing.F) {
	f.Add(atrT0)
	f.Add(atrYub)
	f.Add(atrT1Only)
	f.Fuzz(func(t *testing.T, atr []byte) {
		out, _ := forQEMU(atr)
		if !bytes.Equal(out[:len(atr)], atr) {
			t.Fatal("ATR changed")
		}
		if len(atr) <= maxQEMUATR && len(atr) >= 2 && (atr[0] == 0x3b || atr[0] == 0x3f) && !qemuTakesATR(out) {
			t.Fatalf("% x still refused after padding", atr)
		}
	})
}
