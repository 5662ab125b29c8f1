//go:build unix

package mux

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/net/nettest"

	"github.com/cardshare/cardshare/internal/rawio"
)

// fastMux notices a dead peer within about half a second.
func fastMux() *Config {
	return &Config{KeepaliveInterval: 100 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// As relay mode's connections do (relay.DialAddr, ListenAddr).
	a, b = rawio.RawIO(a), rawio.RawIO(b)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sessionPair starts a guest and a host session over a and b.
func sessionPair(t testing.TB, a, b net.Conn, cfg *Config) (guest, host *yamux.Session) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	g, err := NewSession(a, true, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewSession(b, false, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); h.Close() })
	return g, h
}

// streamPair opens a stream from guest to host and returns both ends.
func streamPair(t testing.TB, guest, host *yamux.Session) (net.Conn, net.Conn) {
	t.Helper()
	c1, err := Open(guest)
	if err != nil {
		t.Fatal(err)
	}
	// yamux announces a stream with its first frame.
	if _, err := c1.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	c2, err := Listener{host}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c1, c2
}

// The stream adapter behaves as a net.Conn: deadlines, concurrent use,
// Close unblocking a pending Read.
func TestStreamConnNettest(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		a, b := tcpPair(t)
		g, h := sessionPair(t, a, b, nil)
		c1, c2 := streamPair(t, g, h)
		return c1, c2, func() { c1.Close(); c2.Close(); g.Close(); h.Close() }, nil
	})
}

// CloseWrite is a half-close: the peer reads EOF and can still answer.
// Close ends both halves, and a Read waiting in another goroutine returns.
func TestStreamConnHalfClose(t *testing.T) {
	a, b := tcpPair(t)
	g, h := sessionPair(t, a, b, nil)
	c1, c2 := streamPair(t, g, h)
	c1.Write([]byte("request"))
	if err := c1.(closeWriter).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c2)
	if err != nil || string(got) != "request" {
		t.Fatalf("host read %q, %v", got, err)
	}
	c2.Write([]byte("reply"))
	c2.(closeWriter).CloseWrite()
	got, err = io.ReadAll(c1)
	if err != nil || string(got) != "reply" {
		t.Fatalf("guest read %q, %v", got, err)
	}

	c3, c4 := streamPair(t, g, h)
	read := make(chan error, 1)
	go func() { _, err := c3.Read(make([]byte, 1)); read <- err }()
	time.Sleep(20 * time.Millisecond)
	c3.Close()
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := c4.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer read after Close: %v, want EOF", err)
	}
}

// blackhole relays a TCP connection until Cut, then swallows everything in
// both directions without closing: a peer that vanished (VM paused, cable
// pulled), which only keepalives can notice. After Freeze it stops reading
// instead, so that the sender's socket buffers fill up.
type blackhole struct {
	mu     sync.Mutex
	cut    bool
	frozen chan struct{}
}

func (b *blackhole) Cut() {
	b.mu.Lock()
	b.cut = true
	b.mu.Unlock()
}

func (b *blackhole) Freeze(t testing.TB) {
	b.mu.Lock()
	b.cut = true
	b.frozen = make(chan struct{})
	b.mu.Unlock()
	t.Cleanup(func() { close(b.frozen) })
}

func (b *blackhole) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		b.mu.Lock()
		frozen := b.frozen
		b.mu.Unlock()
		if frozen != nil {
			<-frozen
			return
		}
		n, err := src.Read(buf)
		b.mu.Lock()
		cut := b.cut
		b.mu.Unlock()
		if n > 0 && !cut {
			dst.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// pipeThrough returns a connection to target through b.
func (b *blackhole) pipeThrough(t testing.TB, a, c net.Conn) {
	go b.copy(a, c)
	go b.copy(c, a)
}

// A peer that stops answering without closing anything, while a stream
// waits in Read as SCardGetStatusChange does: the Read must fail once the
// keepalive misses, not hang (hashicorp/yamux#142).
func TestMuxDeadPeerDuringRead(t *testing.T) {
	a, a2 := tcpPair(t)
	b2, b := tcpPair(t)
	var bh blackhole
	bh.pipeThrough(t, a2, b2)
	g, h := sessionPair(t, a, b, fastMux())
	c1, c2 := streamPair(t, g, h)

	reads := make(chan error, 2)
	for _, c := range []net.Conn{c1, c2} {
		go func() { _, err := c.Read(make([]byte, 1)); reads <- err }()
	}
	time.Sleep(300 * time.Millisecond) // keepalives pass while nothing is cut
	select {
	case err := <-reads:
		t.Fatalf("read ended before the peer died: %v", err)
	default:
	}
	bh.Cut()
	start := time.Now()
	for range 2 {
		select {
		case err := <-reads:
			if !errors.Is(err, ErrSessionLost) {
				t.Errorf("read: %v, want ErrSessionLost", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("read still blocked 5 s after the peer died")
		}
	}
	t.Logf("dead peer noticed after %v", time.Since(start).Round(time.Millisecond))
}

// recordingConn counts the writes that reach the connection.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, bytes.Clone(p))
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recordingConn) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.writes
	r.writes = nil
	return w
}

// Each data frame reaches the connection in one write: header and body
// together. This depends on how yamux's send loop writes (v0.1.2); the test
// catches a yamux upgrade that changes it.
func TestFrameWriter(t *testing.T) {
	a, b := tcpPair(t)
	rec := &recordingConn{Conn: a}
	g, h := sessionPair(t, rec, b, nil)
	c1, c2 := streamPair(t, g, h)
	time.Sleep(50 * time.Millisecond) // let window updates settle
	rec.take()

	for _, msg := range [][]byte{make([]byte, 8), make([]byte, 32), make([]byte, 5), bytes.Repeat([]byte{1}, 20000)} {
		if _, err := c1.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c2, make([]byte, len(msg))); err != nil {
			t.Fatal(err)
		}
		var data [][]byte
		for _, w := range rec.take() {
			if w[1] == frameTypeData {
				data = append(data, w)
			}
		}
		switch {
		case len(msg) <= maxJoined:
			if len(data) != 1 || len(data[0]) != frameHeaderSize+len(msg) {
				t.Errorf("%d-byte message: data writes %d, want one of %d bytes", len(msg), len(data), frameHeaderSize+len(msg))
			}
		default:
			if len(data) != 1 || len(data[0]) != frameHeaderSize {
				t.Errorf("%d-byte message: want the header alone, then the body", len(msg))
			}
		}
	}
}

// setSockBuf sets a socket buffer size of c, which DialAddr and ListenAddr
// return wrapped (RawIO).
func setSockBuf(t *testing.T, c net.Conn, opt, size int) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size) })
	if serr != nil {
		t.Fatal(serr)
	}
}

// A write that times out on a stuck connection closes the session, so that
// the peer does not wait forever for what was not sent (yamux#142).
func TestStreamWriteTimeoutClosesSession(t *testing.T) {
	a, a2 := tcpPair(t)
	b2, b := tcpPair(t)
	// Small buffers fill before the stream's 256 KiB window runs out.
	setSockBuf(t, a, syscall.SO_SNDBUF, 4<<10)
	setSockBuf(t, a2, syscall.SO_RCVBUF, 4<<10)
	var bh blackhole
	bh.pipeThrough(t, a2, b2)
	cfg := &Config{KeepaliveInterval: time.Hour, WriteTimeout: 200 * time.Millisecond}
	g, h := sessionPair(t, a, b, cfg)
	c1, _ := streamPair(t, g, h)
	bh.Freeze(t)
	// Fill the window and the socket buffers until a write times out.
	big := make([]byte, 64<<10)
	deadline := time.Now().Add(3 * time.Second)
	for !g.IsClosed() {
		if time.Now().After(deadline) {
			t.Fatal("session still open 3 s after its connection stalled")
		}
		c1.SetWriteDeadline(time.Now().Add(time.Second))
		c1.Write(big)
	}
}
