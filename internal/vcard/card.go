package vcard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultPort is where vpcd listens for the card of its first slot with the
// stock reader.conf (DEVICENAME /dev/null:0x8C7B). The second slot is on
// DefaultPort+1.
const DefaultPort = 35963

// Control commands from vpcd, a frame with a 1-byte payload (vpcd.h
// VPCD_CTRL_*). Only ctrlATR expects an answer.
const (
	ctrlPowerOff = 0x00
	ctrlPowerOn  = 0x01
	ctrlReset    = 0x02
	ctrlATR      = 0x04
)

// Card is the hello-world card on one connection to vpcd. Closing the
// connection removes the card from the reader; to insert it again, Dial a new
// Card.
type Card struct {
	conn   net.Conn
	r      io.Reader // conn, re-arming TCP_QUICKACK before each read
	closed atomic.Bool
	delay  atomic.Int64 // time.Duration; see SetDelay
	applet applet
}

// Dial inserts a card: it connects to vpcd at addr (host:port). Call Serve to
// answer vpcd.
func Dial(ctx context.Context, addr string) (*Card, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vcard: dial vpcd: %w", err)
	}
	c, err := New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// New makes a card of a connection to vpcd that is already open, for callers
// that must create the socket themselves (another network namespace, a test
// pipe). The Card owns conn from now on.
//
// For a TCP connection New turns on TCP_NODELAY and, on Linux, re-arms
// TCP_QUICKACK before every read. Debian 12's vpcd (vsmartcard 3.3) writes a
// frame's length and its payload with two send calls and leaves Nagle's
// algorithm on, so the payload waits in vpcd until the card acknowledges the
// length. With a delayed ACK that costs 40 ms per APDU; quick ACKs make it
// free. Upstream sends both in one call since commit 76e2679 (2023), which
// Debian 12 does not have.
func New(conn net.Conn) (*Card, error) {
	c := &Card{conn: conn, r: conn}
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			return nil, fmt.Errorf("vcard: set TCP_NODELAY: %w", err)
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("vcard: %w", err)
		}
		c.r = quickAckReader{rc: rc, r: tc}
	}
	return c, nil
}

// SetDelay makes the card take d to answer each APDU from now on, as a real
// card's processing time does: a PIV card or a YubiKey takes some 2 to 20 ms
// per command. With a delay the card, not the path to it, bounds the rate of
// APDUs (one reader answers one APDU at a time), which is what benchmarks of
// many clients sharing a reader need. Control commands (ATR, power) are
// answered at once. Zero, the default, answers APDUs at once too. SetDelay
// may be called while Serve runs.
func (c *Card) SetDelay(d time.Duration) { c.delay.Store(int64(max(d, 0))) }

// Serve answers vpcd until the card is removed, ctx ends, or vpcd goes away.
// It returns nil after Close, ctx.Err() after ctx ends, and an error wrapping
// io.EOF when vpcd closed the connection (pcscd stopped, or the reader was
// removed). Serve must be called at most once.
func (c *Card) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()

	var in, out []byte
	for {
		var err error
		in, err = readFrame(c.r, in)
		if d := time.Duration(c.delay.Load()); err == nil && d > 0 && len(in) > 1 {
			time.Sleep(d)
		}
		if err == nil {
			reply := c.handle(out[:0], in)
			if reply == nil {
				continue
			}
			out = reply
			_, err = c.conn.Write(out)
		}
		switch {
		case err == nil:
		case c.closed.Load():
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, io.EOF):
			return fmt.Errorf("vcard: vpcd closed the connection: %w", err)
		default:
			return fmt.Errorf("vcard: %w", err)
		}
	}
}

// handle answers one frame from vpcd. It appends the answer, framed, to out
// and returns it, or returns nil when the frame needs no answer.
func (c *Card) handle(out, msg []byte) []byte {
	out = append(out, 0, 0) // length, set below
	switch {
	case len(msg) > 1:
		out = c.applet.process(out, msg)
	case len(msg) == 0:
		// Never sent by vpcd; vicc ignores it too.
		return nil
	case msg[0] == ctrlATR:
		out = append(out, ATR...)
	case msg[0] == ctrlPowerOff, msg[0] == ctrlPowerOn, msg[0] == ctrlReset:
		c.applet.reset()
		return nil
	default:
		// Unknown control command: vicc ignores it, and so does the card.
		return nil
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	return out
}

// Close removes the card: it closes the connection to vpcd, which pcscd
// notices at its next poll of the reader (every 400 ms).
func (c *Card) Close() error {
	c.closed.Store(true)
	return c.conn.Close()
}

// readFrame reads one frame and returns its payload, reusing buf when it is
// large enough.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, noEOF(err)
	}
	return buf, nil
}

// noEOF reports a connection that ends inside a frame as io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// quickAckReader re-arms TCP_QUICKACK before each read: Linux clears the flag
// again after a while, so setting it once is not enough.
type quickAckReader struct {
	rc syscall.RawConn
	r  io.Reader
}

func (q quickAckReader) Read(p []byte) (int, error) {
	if err := setQuickAck(q.rc); err != nil {
		return 0, err
	}
	return q.r.Read(p)
}
