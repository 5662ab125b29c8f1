package ccid

import "github.com/cardshare/cardshare/internal/iso7816"

// guestATR is the ATR the guest gets for a host card's atr. QEMU 7.2's
// usb-ccid announces T=0 only (dwProtocols = 1,
// hw/usb/dev-smartcard-reader.c:338 at v7.2.0), and the guest's pcscd
// refuses a card that offers only T=1 ("Protocol T=1 not supported by
// reader"). Unless t1 says the emulated reader takes T=1 (newer QEMU's
// usb-ccid x-t1-support=on), such an ATR gets a T=0 group in front
// (iso7816.AddT0) and the bridge keeps T=0's rules for the guest.
// rewritten reports whether the guest must be spoken T=0 to although the
// host card is not.
func guestATR(atr []byte, t1 bool) (out []byte, rewritten bool) {
	if t1 {
		return atr, false
	}
	return iso7816.AddT0(atr)
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
