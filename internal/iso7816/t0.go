package iso7816

// Responder shapes a card's responses for a host that speaks T=0 or gets
// responses through a size-limited reader, and serves GET RESPONSE from
// what it holds back. It applies two rules:
//
//   - T=0 for a T=1 card (T0 set, AddT0 rewrote the ATR): a T=0 host
//     sends case-4 commands without Le and expects the card to say
//     "61xx, xx bytes waiting" (ISO/IEC 7816-3:2006 §12.2.5, 7816-4 §5.3.4).
//     A response with data to a command without Le is therefore held back
//     and answered 61xx; GET RESPONSE (CLA C0 00 00 Le) takes it in pieces
//     of at most Le: Le larger than what is left → 6Cxx (the exact length),
//     smaller → those bytes and 61xx for the rest, exact → the bytes and the
//     card's status word. Commands with Le get the card's response as is.
//   - any protocol: a response longer than Max is cut to the command's Le
//     (at most 256) and 61xx, the rest again by GET RESPONSE.
//
// Any other command drops what is held back (as a card forgets its
// response). A GET RESPONSE with nothing held back goes to the card: T=1
// cards may say 61xx themselves.
type Responder struct {
	T0   bool    // the host speaks T=0 to a card that does not
	Max  int     // the longest response the host gets in one piece, ≥ 258; 0: any
	held []byte  // response data not yet fetched
	sw   [2]byte // the card's status word, sent with the last piece
	on   bool    // a response is held back
}

// GetResponse answers a command from what is held back, if it is a GET
// RESPONSE and something is held; ok false means: send it to the card.
func (r *Responder) GetResponse(cmd []byte) (resp []byte, ok bool) {
	isGet := len(cmd) == 5 && cmd[1] == 0xc0 && cmd[2] == 0 && cmd[3] == 0
	if !isGet || !r.on {
		r.Drop()
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
		r.Drop()
		return resp, true
	}
	return append(resp, 0x61, byte(min(len(r.held), 256))), true
}

// Drop forgets what is held back (the card is gone or was reset).
func (r *Responder) Drop() { r.held, r.on = nil, false }

// Shape turns the card's response to cmd into the host's.
func (r *Responder) Shape(cmd, resp []byte) []byte {
	if len(resp) < 2 {
		return resp
	}
	data, sw := resp[:len(resp)-2], resp[len(resp)-2:]
	le, hasLe := ShortLe(cmd)
	switch {
	case r.T0 && !hasLe && len(data) > 0:
		r.hold(data, sw)
		return []byte{0x61, byte(min(len(data), 256))}
	case r.Max > 0 && len(resp) > r.Max:
		if !hasLe || le > 256 {
			le = 256
		}
		r.hold(data[le:], sw)
		return append(append([]byte(nil), data[:le]...), 0x61, byte(min(len(r.held), 256)))
	}
	return resp
}

func (r *Responder) hold(data, sw []byte) {
	r.held = append([]byte(nil), data...)
	copy(r.sw[:], sw)
	r.on = true
}

// ShortLe returns a command's Le (00 = 256) and whether it has one: case 2
// (CLA INS P1 P2 Le) or short case 4 (CLA INS P1 P2 Lc data Le). Case 1,
// case 3 and extended commands report false.
func ShortLe(cmd []byte) (int, bool) {
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
