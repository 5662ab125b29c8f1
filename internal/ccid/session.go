package ccid

import (
	"bytes"
	"errors"
	"net"
	"time"

	"github.com/cardshare/cardshare/internal/iso7816"
	"github.com/cardshare/cardshare/internal/vscard"
)

// maxResponse is the receive buffer for the host card's responses: an
// extended response, 65536 bytes and the status word (pcsc-lite's
// MAX_BUFFER_SIZE_EXTENDED is a little more, so any host library takes it).
const maxResponse = 65536 + 2

// maxGuestResponse is the longest response APDU QEMU's usb-ccid passes to
// the guest: one RDR_to_PC_DataBlock of at most BULK_IN_BUF_SIZE = 384
// bytes, 10 of them the CCID header (hw/usb/dev-smartcard-reader.c:74 and
// 777-784 at v7.2.0). QEMU 7.2 drops a longer one without a word
// (ccid_reserve_recv_buf, :601-605), so the guest would wait for an answer
// that never comes; newer QEMU answers it with an error. The bridge never
// sends one: longer responses go out in pieces through GET RESPONSE.
const maxGuestResponse = 384 - 10

// session is one chardev connection's state: what the guest was told, and
// the connection to the host card.
type session struct {
	slot *slot
	conn net.Conn

	shown    want      // what the guest sees
	insertAt time.Time // a card is to be shown at this time (after a gap); zero: none

	hc     HostContext
	card   HostCard
	inTxn  bool
	idleAt time.Time // the transaction ends at this time
	resp   iso7816.Responder
	buf    []byte
}

func (s *session) send(typ vscard.Type, payload []byte) error {
	return write(s.conn, typ, vscard.MinimalReaderID, payload)
}

// sync brings what the guest sees in line with the host (slot.want).
func (s *session) sync() error {
	w := s.slot.get()
	if s.shown.reader != w.reader {
		if s.shown.reader != "" {
			if err := s.remove(); err != nil {
				return err
			}
			if err := s.send(vscard.ReaderRemove, nil); err != nil {
				return err
			}
		}
		s.shown, s.insertAt = want{}, time.Time{}
		if w.reader != "" {
			// QEMU's one reader has id 0 whatever we ask
			// (ccid-card-passthru.c:251-258); the name is for show.
			if err := s.send(vscard.ReaderAdd, []byte(w.reader)); err != nil {
				return err
			}
			s.shown.reader = w.reader
		}
		s.slot.update(func(st *Status) { st.Reader, st.Card = w.reader, false })
	}
	if s.shown.present && (!w.present || w.gen != s.shown.gen || !bytes.Equal(w.atr, s.shown.atr)) {
		if err := s.remove(); err != nil {
			return err
		}
		if w.present {
			// Swapped or reset between two looks: the guest must see the
			// card go, or its driver keeps talking to the old one.
			s.insertAt = time.Now().Add(s.slot.cfg.RemovalGap)
			return nil
		}
	}
	if !w.present {
		s.insertAt = time.Time{}
	}
	if !s.shown.present && w.present && s.insertAt.IsZero() {
		return s.insert(w)
	}
	return nil
}

// insert shows the guest the card in w.
func (s *session) insert(w want) error {
	atr, t0 := guestATR(w.atr, s.slot.cfg.T1)
	atr, padded := forQEMU(atr)
	if padded {
		s.slot.log.Warn("ccid: QEMU 7.2 would refuse this ATR (its check misreads TD bytes); padded with zero bytes", "reader", w.reader, "atr_bytes", len(w.atr))
	}
	s.resp = iso7816.Responder{T0: t0, Max: maxGuestResponse}
	s.shown = w
	s.slot.update(func(st *Status) { st.Card, st.T0ForT1 = true, t0 })
	s.slot.log.Info("ccid: card inserted", "reader", w.reader, "atr_bytes", len(w.atr), "t0_for_t1_card", t0)
	if err := s.send(vscard.ATR, atr); err != nil {
		return err
	}
	if s.slot.cfg.Exclusive {
		if err := s.connect(); err != nil {
			s.slot.log.Warn("ccid: cannot take the card exclusively", "reader", w.reader, "err", err)
		}
	}
	return nil
}

// remove tells the guest the card is gone and lets go of it. QEMU answers
// the guest's pending command, if any, with an error
// (ccid_card_card_removed, dev-smartcard-reader.c:1210-1219).
func (s *session) remove() error {
	s.dropCard()
	if !s.shown.present {
		return nil
	}
	s.shown.present = false
	s.slot.update(func(st *Status) { st.Card, st.T0ForT1 = false, false })
	s.slot.log.Info("ccid: card removed", "reader", s.shown.reader)
	return s.send(vscard.CardRemove, nil)
}

// timer fires at the next deadline: the end of the guest's transaction or
// of a removal gap.
func (s *session) timer() <-chan time.Time {
	var next time.Time
	if s.inTxn {
		next = s.idleAt
	}
	if !s.insertAt.IsZero() && (next.IsZero() || s.insertAt.Before(next)) {
		next = s.insertAt
	}
	if next.IsZero() {
		return nil
	}
	return time.After(time.Until(next))
}

func (s *session) tick() error {
	now := time.Now()
	if s.inTxn && !now.Before(s.idleAt) {
		s.endTxn()
	}
	if !s.insertAt.IsZero() && !now.Before(s.insertAt) {
		s.insertAt = time.Time{}
		if w := s.slot.get(); w.present && w.reader == s.shown.reader {
			return s.insert(w)
		}
	}
	return nil
}

// apdu runs one guest command and answers it.
func (s *session) apdu(cmd []byte) error {
	if !s.shown.present {
		// QEMU only passes commands while it shows a card; one may cross a
		// removal. An Error makes QEMU fail it (ccid_card_card_error).
		return s.send(vscard.Error, vscard.AppendError(nil, vscard.GeneralError))
	}
	s.slot.update(func(st *Status) { st.APDUs++ })
	if resp, ok := s.resp.GetResponse(cmd); ok {
		return s.send(vscard.APDU, resp)
	}
	n, err := s.transmit(cmd)
	if err != nil {
		return s.hostError(err)
	}
	out := s.resp.Shape(cmd, s.buf[:n])
	s.slot.log.Debug("ccid: card response", "bytes", n, "to_guest", len(out))
	return s.send(vscard.APDU, out)
}

func (s *session) transmit(cmd []byte) (int, error) {
	if err := s.connect(); err != nil {
		return 0, err
	}
	if !s.slot.cfg.Exclusive && !s.inTxn {
		if err := s.card.BeginTransaction(); err != nil {
			return 0, err
		}
		s.inTxn = true
	}
	if s.buf == nil {
		s.buf = make([]byte, maxResponse)
	}
	n, err := s.card.Transmit(cmd, s.buf)
	s.idleAt = time.Now().Add(s.slot.cfg.IdleRelease)
	return n, err
}

// hostError answers a command the host could not run: the command fails
// (an Error, which QEMU turns into a failed CCID answer). A reset by another
// program, or a card gone, then shows in the guest as a removal and, if the
// card is still there after the gap, an insertion: never as a wrong answer.
func (s *session) hostError(err error) error {
	switch {
	case errors.Is(err, ErrResetCard):
		s.slot.log.Info("ccid: card was reset by another program; the guest sees it removed and inserted", "reader", s.shown.reader)
		if s.card != nil && s.card.Reconnect() != nil {
			s.dropCard()
		}
		s.inTxn = false
		fallthrough
	case errors.Is(err, ErrRemovedCard), errors.Is(err, ErrReaderUnavailable):
		// Fail the command first: QEMU 7.2 answers a command still
		// pending at CardRemove with an empty block and no error status
		// (ccid_card_card_removed → ccid_flush_pending_answers,
		// dev-smartcard-reader.c:1210-1219), which the guest's libccid
		// passes on as a successful empty response.
		if serr := s.send(vscard.Error, vscard.AppendError(nil, vscard.GeneralError)); serr != nil {
			return serr
		}
		if rerr := s.remove(); rerr != nil {
			return rerr
		}
		s.insertAt = time.Now().Add(s.slot.cfg.RemovalGap)
		return nil
	}
	s.slot.log.Warn("ccid: command failed on the host", "reader", s.shown.reader, "err", err)
	if !errors.Is(err, ErrSharingViolation) {
		s.dropCard()
	}
	return s.send(vscard.Error, vscard.AppendError(nil, vscard.GeneralError))
}

func (s *session) connect() error {
	if s.card != nil {
		return nil
	}
	if s.hc == nil {
		hc, err := s.slot.host.EstablishContext()
		if err != nil {
			return err
		}
		s.hc = hc
	}
	card, err := s.hc.Connect(s.shown.reader, s.slot.cfg.Exclusive)
	if err != nil {
		return err
	}
	s.card = card
	return nil
}

func (s *session) endTxn() {
	if s.inTxn && s.card != nil {
		if err := s.card.EndTransaction(); err != nil {
			s.slot.log.Debug("ccid: end transaction", "err", err)
		}
	}
	s.inTxn = false
}

func (s *session) dropCard() {
	s.endTxn()
	if s.card != nil {
		s.card.Disconnect()
		s.card = nil
	}
	s.resp.Drop()
}

func (s *session) close() {
	s.dropCard()
	if s.hc != nil {
		s.hc.Release()
		s.hc = nil
	}
}
