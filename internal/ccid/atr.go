package ccid

import "errors"

// atrInfo is what the bridge needs from an ATR (ISO/IEC 7816-3:2006 §8.2).
type atrInfo struct {
	t0, t1 bool // protocols offered (T=0 also when TD1 is absent)
	td1    int  // offset of TD1, or -1
	hist   int  // offset of the historical bytes
	k      int  // number of historical bytes
	tck    bool // a check byte ends the ATR (any protocol but T=0 offered)
}

var errATR = errors.New("malformed ATR")

// parseATR walks an ATR's interface bytes. It reports errATR when the
// bytes announced do not fit.
func parseATR(atr []byte) (atrInfo, error) {
	if len(atr) < 2 || (atr[0] != 0x3b && atr[0] != 0x3f) {
		return atrInfo{}, errATR
	}
	a := atrInfo{td1: -1, k: int(atr[1] & 0x0f)}
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
			return atrInfo{}, errATR
		}
		if first {
			a.td1 = i
			first = false
		}
		switch atr[i] & 0x0f {
		case 0:
			a.t0 = true
		case 1:
			a.t1 = true
		}
		if atr[i]&0x0f != 0 {
			a.tck = true
		}
		y = atr[i] >> 4
		i++
	}
	if a.td1 < 0 {
		a.t0 = true // no TD1: T=0 only (§8.2.3)
	}
	a.hist = i
	end := i + a.k
	if a.tck {
		end++
	}
	if end > len(atr) {
		return atrInfo{}, errATR
	}
	return a, nil
}

// guestATR is the ATR the guest gets for a host card's atr. QEMU 7.2's
// usb-ccid announces T=0 only (dwProtocols = 1,
// hw/usb/dev-smartcard-reader.c:338 at v7.2.0), and the guest's pcscd
// refuses a card that offers only T=1 ("Protocol T=1 not supported by
// reader"). Unless t1 says the emulated reader takes T=1 (newer QEMU's
// usb-ccid x-t1-support=on), such an ATR gets a T=0 group in front:
//
//	TS T0 [TA1 TB1 TC1] TD1'=80 (T=0, TD2 follows) TD2'=TD1 without TA2
//	[TB2 TC2] [the later groups as they were] historical bytes TCK'
//
// Everything the guest's middleware matches cards by (the historical
// bytes, the T=1 parameters) stays; TA2 (specific mode) goes, as it would
// force T=1; TCK is recomputed. The guest then negotiates T=0 and the
// bridge keeps T=0's rules for it (t0.go). rewritten reports whether the
// guest must be spoken T=0 to although the host card is not.
func guestATR(atr []byte, t1 bool) (out []byte, rewritten bool) {
	a, err := parseATR(atr)
	if err != nil || a.t0 || t1 || a.td1 < 0 {
		return atr, false
	}
	out = make([]byte, 0, len(atr)+1)
	out = append(out, atr[:a.td1]...)
	td := atr[a.td1]
	out = append(out, 0x80, td&^0x10)
	rest := atr[a.td1+1 : a.hist+a.k]
	if td&0x10 != 0 {
		rest = rest[1:] // TA2
	}
	out = append(out, rest...)
	var tck byte
	for _, b := range out[1:] {
		tck ^= b
	}
	out = append(out, tck)
	if len(out) > maxATR {
		return atr, false
	}
	return out, true
}

// qemuTakesATR is QEMU 7.2's check of an ATR (check_atr,
// hw/usb/ccid-card-passthru.c:155-204 at v7.2.0), bug for bug: after a TD
// byte it reads the next TD one byte too far (data[opt_bytes + 2] once
// opt_bytes counts the TD itself), and it walks two groups at most. An ATR
// it finds too short is refused with VSC_GENERAL_ERROR and the guest sees no
// card; one it finds too long passes.
func qemuTakesATR(atr []byte) bool {
	if len(atr) < 2 || len(atr) > maxQEMUATR || (atr[0] != 0x3b && atr[0] != 0x3f) {
		return false
	}
	hist, opt := int(atr[1]&0x0f), 0
	td, n := atr[1]>>4, 0
	for td != 0 && n < 2 && opt+hist+2 < len(atr) {
		n++
		for _, bit := range []byte{1, 2, 4} {
			if td&bit != 0 {
				opt++
			}
		}
		if td&8 != 0 {
			opt++
			td = 0
			if opt+2 < len(atr) {
				td = atr[opt+2] >> 4
			}
		}
	}
	return len(atr) >= 2+hist+opt
}

// maxQEMUATR is QEMU's MAX_ATR_SIZE (ccid-card-passthru.c:53).
const maxQEMUATR = 40

// forQEMU makes an ATR that QEMU 7.2 refuses (qemuTakesATR) acceptable by
// appending zero bytes after it, which QEMU lets through ("too long") and
// the guest's ATR parsers ignore after the check byte; padded reports
// whether it had to. Without it the guest would see no card at all.
func forQEMU(atr []byte) (out []byte, padded bool) {
	out = atr
	for !qemuTakesATR(out) && len(out) < maxQEMUATR {
		out = append(out[:len(out):len(out)], 0)
		padded = true
	}
	return out, padded
}

// maxATR is ISO/IEC 7816-3's longest ATR (32 bytes after TS), which the
// guest's pcsc-lite also holds at most (MAX_ATR_SIZE 33); QEMU takes 40.
const maxATR = 33
