package iso7816

import "errors"

// ATRInfo is the structure of an ATR (ISO/IEC 7816-3:2006 §8.2).
type ATRInfo struct {
	T0, T1 bool // protocols offered (T=0 also when TD1 is absent)
	TD1    int  // offset of TD1, or -1
	Hist   int  // offset of the historical bytes
	K      int  // number of historical bytes
	TCK    bool // a check byte ends the ATR (any protocol but T=0 offered)
}

// ErrATR: the ATR's bytes do not fit what its format bytes announce.
var ErrATR = errors.New("iso7816: malformed ATR")

// ParseATR walks an ATR's interface bytes.
func ParseATR(atr []byte) (ATRInfo, error) {
	if len(atr) < 2 || (atr[0] != 0x3b && atr[0] != 0x3f) {
		return ATRInfo{}, ErrATR
	}
	a := ATRInfo{TD1: -1, K: int(atr[1] & 0x0f)}
	y, i, first := atr[1]>>4, 2, true
	for {
		n := 0
		for b := y & 7; b != 0; b >>= 1 {
			n += int(b & 1)
		}
		i += n // TA, TB, TC
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return ATRInfo{}, ErrATR
		}
		if first {
			a.TD1 = i
			first = false
		}
		switch atr[i] & 0x0f {
		case 0:
			a.T0 = true
		case 1:
			a.T1 = true
		}
		if atr[i]&0x0f != 0 {
			a.TCK = true
		}
		y = atr[i] >> 4
		i++
	}
	if a.TD1 < 0 {
		a.T0 = true // no TD1: T=0 only (§8.2.3)
	}
	a.Hist = i
	end := i + a.K
	if a.TCK {
		end++
	}
	if end > len(atr) {
		return ATRInfo{}, ErrATR
	}
	return a, nil
}

// AddT0 gives an ATR that offers only T=1 a T=0 group in front, for a
// reader that speaks only T=0:
//
//	TS T0 [TA1 TB1 TC1] TD1'=80 (T=0, TD2 follows) TD2'=TD1 without TA2
//	[TB2 TC2] [the later groups as they were] historical bytes TCK'
//
// Everything the guest's middleware matches cards by (the historical
// bytes, the T=1 parameters) stays; TA2 (specific mode) goes, as it would
// force T=1; TCK is recomputed. The host then negotiates T=0, and whoever
// passes its commands to the T=1 card keeps T=0's rules for it
// (Responder). rewritten reports whether the ATR changed: false for an ATR
// that offers T=0 already, a malformed one, or one that would grow past
// MaxATR.
func AddT0(atr []byte) (out []byte, rewritten bool) {
	a, err := ParseATR(atr)
	if err != nil || a.T0 || a.TD1 < 0 {
		return atr, false
	}
	out = make([]byte, 0, len(atr)+1)
	out = append(out, atr[:a.TD1]...)
	td := atr[a.TD1]
	out = append(out, 0x80, td&^0x10)
	rest := atr[a.TD1+1 : a.Hist+a.K]
	if td&0x10 != 0 {
		rest = rest[1:] // TA2
	}
	out = append(out, rest...)
	var tck byte
	for _, b := range out[1:] {
		tck ^= b
	}
	out = append(out, tck)
	if len(out) > MaxATR {
		return atr, false
	}
	return out, true
}

// MaxATR is ISO/IEC 7816-3's longest ATR (32 bytes after TS), which
// pcsc-lite also holds at most (MAX_ATR_SIZE 33).
const MaxATR = 33
