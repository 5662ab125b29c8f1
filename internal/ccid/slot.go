package ccid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/vscard"
)

// ErrNotQEMU: the chardev peer did not open with a VSCard Init carrying
// the "VSCD" magic, so it is not QEMU's ccid-card-passthru. Nothing is sent
// to the card.
var ErrNotQEMU = errors.New("ccid: the chardev peer is not QEMU's ccid-card-passthru (no VSCard Init with the VSCD magic)")

// slot is one emulated reader: one chardev, and the host reader bound to it.
type slot struct {
	cfg  *Config
	host Host
	conn *connector
	log  *slog.Logger

	mu     sync.Mutex
	w      want
	poke   chan struct{} // w changed
	status Status
}

func (s *slot) set(w want) {
	s.mu.Lock()
	same := s.w.reader == w.reader && s.w.present == w.present && s.w.gen == w.gen && bytes.Equal(s.w.atr, w.atr)
	s.w = w
	s.mu.Unlock()
	if !same {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

func (s *slot) get() want {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w
}

// run serves QEMU connection after connection until ctx ends or a peer is
// not QEMU.
func (s *slot) run(ctx context.Context) error {
	for {
		conn, err := s.conn.next(ctx, func(err error, wait time.Duration) {
			s.log.Debug("ccid: QEMU not reachable, retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.log.Info("ccid: QEMU connected")
		err = s.serve(ctx, conn)
		conn.Close()
		s.update(func(st *Status) {
			*st = Status{APDUs: st.APDUs, Since: time.Now()}
			if err != nil && ctx.Err() == nil {
				st.LastError = err.Error()
			}
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNotQEMU):
			// Attach's caller prints it: one line.
			return fmt.Errorf("%w: %s", err, s.conn.ep)
		}
		s.log.Info("ccid: QEMU disconnected, waiting for it again", "err", err)
	}
}

// serve runs one chardev connection: the Init exchange, then the guest's
// APDUs and the host's card events, one at a time.
func (s *slot) serve(ctx context.Context, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := vscard.NewReader(chardevReader(conn))
	// Send our Init first: a QEMU that listens sent its own when the
	// chardev opened, possibly before we connected, and answers ours
	// (ccid-card-passthru.c:131-153).
	if err := write(conn, vscard.Init, vscard.UndefinedReaderID, vscard.NewInit().Append(nil)); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(s.cfg.InitTimeout))
	m, err := r.Next()
	if err != nil {
		if errors.Is(err, vscard.ErrTooLong) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %w", ErrNotQEMU, err)
		}
		return err
	}
	if m.Type != vscard.Init {
		return fmt.Errorf("%w: first message type %#x", ErrNotQEMU, uint32(m.Type))
	}
	if p, err := vscard.ParseInit(m.Payload); err != nil || p.CheckMagic() != nil {
		return ErrNotQEMU
	}
	conn.SetReadDeadline(time.Time{})
	s.update(func(st *Status) { st.QEMU, st.Since = true, time.Now() })

	apdus := make(chan []byte)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done) // readLoop stops waiting to hand over an APDU
	go func() {
		readErr <- readLoop(r, apdus, done, s.log)
		close(apdus)
	}()
	sess := &session{slot: s, conn: conn}
	defer sess.close()
	if err := sess.sync(); err != nil {
		return err
	}
	for {
		select {
		case apdu, ok := <-apdus:
			if !ok {
				return <-readErr
			}
			if err := sess.apdu(apdu); err != nil {
				return err
			}
		case <-s.poke:
			if err := sess.sync(); err != nil {
				return err
			}
		case <-sess.timer():
			if err := sess.tick(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readLoop reads QEMU's messages and passes each APDU on (a copy: the
// reader reuses its buffer).
func readLoop(r *vscard.Reader, apdus chan<- []byte, done <-chan struct{}, log *slog.Logger) error {
	for {
		m, err := r.Next()
		if err != nil {
			return err
		}
		switch m.Type {
		case vscard.APDU:
			log.Debug("ccid: guest APDU", "bytes", len(m.Payload))
			select {
			case apdus <- bytes.Clone(m.Payload):
			case <-done:
				return nil
			}
		case vscard.Error:
			code, err := vscard.ParseError(m.Payload)
			if err == nil && code != vscard.Success {
				// QEMU refuses an ATR it finds inconsistent or too long
				// (ccid-card-passthru.c:214-227).
				log.Warn("ccid: QEMU reports an error", "code", code.String())
			}
		case vscard.Init:
			// QEMU's answer to our Init, after its unprompted one.
		default:
			log.Debug("ccid: ignoring message", "type", m.Type.String(), "bytes", len(m.Payload))
		}
	}
}

// write sends one message in one write.
func write(w io.Writer, typ vscard.Type, id uint32, payload []byte) error {
	_, err := w.Write(vscard.AppendMessage(make([]byte, 0, vscard.HeaderSize+len(payload)), typ, id, payload))
	return err
}
