package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Config tunes the yamux session that carries one guest's pcsc-lite
// connections, one stream each. Both ends use the same values. A nil
// *Config means DefaultConfig().
//
// The stream window is not configurable: it stays at yamux's minimum of
// 256 KiB, which holds the largest pcsc-lite message (an extended APDU,
// 65,588 bytes with its headers) several times over, so no message ever waits
// for a window update. The window is a credit, not an allocation: yamux
// allocates a stream's receive buffer as data arrives.
type Config struct {
	// KeepaliveInterval is how often each end pings the other.
	// SCardGetStatusChange leaves a stream silent for hours by design, so
	// silence says nothing about the peer: only a ping does. Without pings,
	// a peer that vanished without closing the connection (VM paused, host
	// crashed, network gone) leaves every Stream.Read waiting forever
	// (hashicorp/yamux#142). A dead peer is noticed within KeepaliveInterval
	// plus WriteTimeout; every stream then fails, so that guest programs see
	// an error and the host pcscd frees their card locks. Zero means 5 s.
	KeepaliveInterval time.Duration

	// WriteTimeout bounds how long a frame may wait to be written and how
	// long a ping may wait for its answer (yamux's ConnectionWriteTimeout).
	// pcsc-lite messages are small; on a working link a write takes
	// milliseconds, so a write that waits this long means the link is gone.
	// The whole session is closed then: yamux alone would fail only that
	// write and leave the peer's Read on the stream waiting
	// (hashicorp/yamux#142). Zero means 10 s.
	WriteTimeout time.Duration

	// StreamOpenTimeout is how long a new stream may wait for the host to
	// accept it. The host accepts at once, so a longer wait means it is
	// stuck, and the session is closed to start over. Zero means 10 s.
	StreamOpenTimeout time.Duration

	// StreamCloseTimeout is how long a stream whose sending half is closed
	// may wait for the peer to close too before yamux resets it. It bounds
	// what a stream costs after a relayed connection ended on one side.
	// Zero means 1 min.
	StreamCloseTimeout time.Duration

	// AcceptBacklog is how many new streams may wait to be accepted; both
	// ends must agree. It is above pcscd's 200 client threads
	// (PCSC_MAX_CONTEXT_THREADS), so the backlog is never what limits a
	// guest. Zero means 256.
	AcceptBacklog int
}

// DefaultConfig returns the configuration used for a nil *Config.
func DefaultConfig() *Config {
	return &Config{
		KeepaliveInterval:  5 * time.Second,
		WriteTimeout:       10 * time.Second,
		StreamOpenTimeout:  10 * time.Second,
		StreamCloseTimeout: time.Minute,
		AcceptBacklog:      256,
	}
}

func (c *Config) withDefaults() Config {
	if c == nil {
		c = DefaultConfig()
	}
	d, cc := DefaultConfig(), *c
	if cc.KeepaliveInterval <= 0 {
		cc.KeepaliveInterval = d.KeepaliveInterval
	}
	if cc.WriteTimeout <= 0 {
		cc.WriteTimeout = d.WriteTimeout
	}
	if cc.StreamOpenTimeout <= 0 {
		cc.StreamOpenTimeout = d.StreamOpenTimeout
	}
	if cc.StreamCloseTimeout <= 0 {
		cc.StreamCloseTimeout = d.StreamCloseTimeout
	}
	if cc.AcceptBacklog <= 0 {
		cc.AcceptBacklog = d.AcceptBacklog
	}
	return cc
}

func (c *Config) yamux(log *slog.Logger) *yamux.Config {
	cc := c.withDefaults()
	y := yamux.DefaultConfig()
	y.AcceptBacklog = cc.AcceptBacklog
	y.EnableKeepAlive = true
	y.KeepAliveInterval = cc.KeepaliveInterval
	y.ConnectionWriteTimeout = cc.WriteTimeout
	y.StreamOpenTimeout = cc.StreamOpenTimeout
	y.StreamCloseTimeout = cc.StreamCloseTimeout
	y.LogOutput = nil
	y.Logger = yamuxLogger{log}
	return y
}

// NewSession starts a yamux session on conn. The guest is always the yamux
// client, which opens streams (Open); the host is the server, which accepts
// them (Listener), whichever end dialed. A nil cfg means DefaultConfig();
// log receives yamux's own messages at debug level.
func NewSession(conn net.Conn, guest bool, cfg *Config, log *slog.Logger) (*yamux.Session, error) {
	fw := &frameWriter{Conn: conn}
	var s *yamux.Session
	var err error
	if guest {
		s, err = yamux.Client(fw, cfg.yamux(log))
	} else {
		s, err = yamux.Server(fw, cfg.yamux(log))
	}
	if err != nil {
		return nil, fmt.Errorf("relay: start yamux session: %w", err)
	}
	return s, nil
}

// ErrSessionLost means the connection that carried a relayed pcsc-lite
// connection ended under it: the peer closed it, stopped answering pings, or
// was cut off.
var ErrSessionLost = errors.New("relay: connection to the peer lost")

// streamConn is a yamux stream with the half-close made explicit. yamux's
// Stream.Close only ends the sending half (it sends FIN, and reads go on
// until the peer's FIN), which is what CloseWrite means for a net.Conn. Close
// here ends both halves: a Read waiting in another goroutine returns at once,
// as Pipe needs to unblock its other direction.
//
// It also turns the errors of a session that died under the stream into
// ErrSessionLost: yamux reports that as a plain io.EOF, which would read as
// the peer's orderly end.
//
// And it applies write deadlines to every write: yamux checks them only
// while a write waits for window.
type streamConn struct {
	*yamux.Stream
	closed        atomic.Bool
	writeDeadline atomic.Pointer[time.Time]
	// rmu orders Close's wake-up of reads and SetReadDeadline: a
	// deadline set after Close must not undo it.
	rmu sync.Mutex
}

var (
	_ net.Conn    = (*streamConn)(nil)
	_ closeWriter = (*streamConn)(nil)
)

// aLongTimeAgo is a deadline in the past, to wake blocked reads.
var aLongTimeAgo = time.Unix(1, 0)

// CloseWrite sends FIN: the peer reads EOF, and this end can still read.
func (c *streamConn) CloseWrite() error { return c.Stream.Close() }

// Close sends FIN and ends reading. yamux frees the stream once the peer
// has closed its half too, or after Config.StreamCloseTimeout.
func (c *streamConn) Close() error {
	c.rmu.Lock()
	if c.closed.Swap(true) {
		c.rmu.Unlock()
		return nil
	}
	c.Stream.SetReadDeadline(aLongTimeAgo)
	c.rmu.Unlock()
	return c.Stream.Close()
}

// SetReadDeadline sets the deadline of reads, until Close.
func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return c.Stream.SetReadDeadline(t)
}

func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.Stream.Read(b)
	if err != nil {
		err = c.fixErr(err)
	}
	return n, err
}

func (c *streamConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(&t)
	return c.Stream.SetWriteDeadline(t)
}

func (c *streamConn) Write(b []byte) (int, error) {
	if d := c.writeDeadline.Load(); d != nil && !d.IsZero() && !time.Now().Before(*d) {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.Stream.Write(b)
	if err != nil {
		if errors.Is(err, yamux.ErrConnectionWriteTimeout) {
			// hashicorp/yamux#142: the peer may wait forever for what
			// this write did not send. Start over.
			c.Stream.Session().Close()
		}
		err = c.fixErr(err)
	}
	return n, err
}

func (c *streamConn) fixErr(err error) error {
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case errors.Is(err, yamux.ErrTimeout):
		return os.ErrDeadlineExceeded
	case c.Stream.Session().IsClosed() && (err == io.EOF || errors.Is(err, yamux.ErrStreamClosed) || errors.Is(err, yamux.ErrSessionShutdown)):
		return ErrSessionLost
	}
	return err
}

// closeWriter is a connection that can close its sending half, as
// bridge.Pipe looks for.
type closeWriter interface{ CloseWrite() error }

// Listener accepts the streams of a session as connections whose Close and
// CloseWrite do what Pipe expects, so that bridge.Serve can use a session as
// its listener.
type Listener struct{ Session *yamux.Session }

// Accept waits for the peer's next stream.
func (l Listener) Accept() (net.Conn, error) {
	st, err := l.Session.AcceptStream()
	if err != nil {
		return nil, err
	}
	return &streamConn{Stream: st}, nil
}

// Close closes the session.
func (l Listener) Close() error { return l.Session.Close() }

// Addr is the session's local address.
func (l Listener) Addr() net.Addr { return l.Session.Addr() }

// Open opens a stream on s for a new pcsc-lite connection.
func Open(s *yamux.Session) (net.Conn, error) {
	st, err := s.OpenStream()
	if err != nil {
		if s.IsClosed() {
			return nil, ErrSessionLost
		}
		return nil, fmt.Errorf("relay: open stream: %w", err)
	}
	return &streamConn{Stream: st}, nil
}

// yamux frame layout (spec.md in hashicorp/yamux): version, type, flags (2),
// stream ID (4), length (4), all big-endian.
const (
	frameHeaderSize = 12
	frameTypeData   = 0
	// maxJoined is the largest frame frameWriter joins: a TLS record holds
	// 16 KiB, so a larger frame takes several records anyway.
	maxJoined = 16 << 10
)

// frameWriter joins the two writes in which yamux sends a data frame, its
// 12-byte header and then its body (Session.sendLoop in hashicorp/yamux
// v0.1.2), into one. Each frame then costs one TLS record and one system
// call instead of two, and with TCP_NODELAY one segment instead of two.
//
// Only yamux's send loop writes, from one goroutine, and it always writes
// a data frame's body right after its header, so holding the header until
// the body comes is safe. TestFrameWriter checks that this stays true.
type frameWriter struct {
	net.Conn
	hdr  [frameHeaderSize]byte
	held bool
	buf  []byte
}

func (w *frameWriter) Write(p []byte) (int, error) {
	if w.held {
		w.held = false
		if len(p) > maxJoined {
			if _, err := w.Conn.Write(w.hdr[:]); err != nil {
				return 0, err
			}
			return w.Conn.Write(p)
		}
		w.buf = append(append(w.buf[:0], w.hdr[:]...), p...)
		n, err := w.Conn.Write(w.buf)
		return max(n-frameHeaderSize, 0), err
	}
	if len(p) == frameHeaderSize && p[1] == frameTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(w.hdr[:], p)
		w.held = true
		return len(p), nil
	}
	return w.Conn.Write(p)
}

// yamuxLogger sends yamux's own messages to slog at debug level: every
// failure they describe also ends a session or a stream, which cardshare
// logs itself with context.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any) { l.log.Debug(fmt.Sprint(v...), "component", "yamux") }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "yamux")
}
func (l yamuxLogger) Println(v ...any) { l.log.Debug(fmt.Sprint(v...), "component", "yamux") }
