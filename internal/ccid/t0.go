package ccid

// maxGuestResponse is the longest response APDU QEMU's usb-ccid passes to
// the guest: one RDR_to_PC_DataBlock of at most BULK_IN_BUF_SIZE = 384
// bytes, 10 of them the CCID header (hw/usb/dev-smartcard-reader.c:74 and
// 777-784 at v7.2.0). QEMU 7.2 drops a longer one without a word
// (ccid_reserve_recv_buf, :601-605), so the guest would wait for an answer
// that never comes; newer QEMU answers it with an error. The bridge never
// sends one: longer responses go out in pieces through GET RESPONSE.
const maxGuestResponse = 384 - 10

// responder shapes the card's responses for the guest and serves GET
// RESPONSE from what it holds back. It applies two rules:
//
//   - T=0 for a T=1 card (t0 set, guestATR rewrote the ATR): a T=0 guest
//     sends case-4 commands without Le and expects the card to say
//     "61xx, xx bytes waiting" (ISO/IEC 7816-3:2006 §12.2.5, 7816-4 §5.3.4).
//     A response with data to a command without Le is therefore held back
//     and answered 61xx; GET RESPONSE (CLA C0 00 00 Le) takes it in pieces
//     of at most Le: Le larger than what is left → 6Cxx (the exact length),
//     smaller → those bytes and 61xx for the rest, exact → the bytes and the
//     card's status word. Commands with Le get the card's response as is.
//   - any protocol: a response longer than maxGuestResponse is cut to the
//     command's Le (at most 256) and 61xx, the rest again by GET RESPONSE.
//
// Any other command drops what is held back (as a card forgets its
// response). A GET RESPONSE with nothing held back goes to the card: T=1
// cards may say 61xx themselves.
type responder struct {
	t0   bool
	held []byte  // response data not yet fetched
	sw   [2]byte // the card's status word, sent with the last piece
	on   bool    // a response is held back
}

// getResponse answers a command from what is held back, if it is a GET
// RESPONSE and something is held; ok false means: send it to the card.
func (r *responder) getResponse(cmd []byte) (resp []byte, ok bool) {
	isGet := len(cmd) == 5 && cmd[1] == 0xc0 && cmd[2] == 0 && cmd[3] == 0
	if !isGet || !r.on {
		r.drop()
		return nil, false
	}
	le := int(cmd[4])
	if le == 0 {
		le = 256
	}
	n := len(r.held)
	if le > n {
		if n >= 256 {
			le = 256
		} else {
			return []byte{0x6c, byte(n)}, true
		}
	}
	resp = append([]byte(nil), r.held[:le]...)
	r.held = r.held[le:]
	if len(r.held) == 0 {
		resp = append(resp, r.sw[:]...)
		r.drop()
		return resp, true
	}
	return append(resp, 0x61, byte(min(len(r.held), 256))), true
}

func (r *responder) drop() { r.held, r.on = nil, false }

// shape turns the card's response to cmd into the guest's.
func (r *responder) shape(cmd, resp []byte) []byte {
	if len(resp) < 2 {
		return resp
	}
	data, sw := resp[:len(resp)-2], resp[len(resp)-2:]
	le, hasLe := shortLe(cmd)
	switch {
	case r.t0 && !hasLe && len(data) > 0:
		r.hold(data, sw)
		return []byte{0x61, byte(min(len(data), 256))}
	case len(resp) > maxGuestResponse:
		if !hasLe || le > 256 {
			le = 256
		}
		r.hold(data[le:], sw)
		return append(append([]byte(nil), data[:le]...), 0x61, byte(min(len(r.held), 256)))
	}
	return resp
}

func (r *responder) hold(data, sw []byte) {
	r.held = append([]byte(nil), data...)
	copy(r.sw[:], sw)
	r.on = true
}

// shortLe returns a command's Le (00 = 256) and whether it has one: case 2
// (CLA INS P1 P2 Le) or short case 4 (CLA INS P1 P2 Lc data Le). Case 1,
// case 3 and extended commands report false.
func shortLe(cmd []byte) (int, bool) {
	var b byte
	switch {
	case len(cmd) == 5:
		b = cmd[4]
	case len(cmd) > 5 && cmd[4] != 0 && len(cmd) == 6+int(cmd[4]):
		b = cmd[len(cmd)-1]
	default:
		return 0, false
	}
	if b == 0 {
		return 256, true
	}
	return int(b), true
}
