package bridge_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/relay/mux"
)

// The transport matrix (STYLE.md practice 8, yamux's testConnTypes): the
// same half-close, 64 KiB and blocking-wait bodies run over every kind of
// connection cardshare pipes: a Unix socket (the pcscd socket, the guest
// socket), an SSH channel (SSH mode's forwarded guest socket) and a yamux
// stream as relay mode adapts it (relay/mux). Test code may import the
// transports; the bridge itself imports none.

// transport makes connected pairs of one kind. Both ends can half-close.
type transport struct {
	name string
	pair func(t *testing.T) (net.Conn, net.Conn)
}

var transports = []transport{
	{"unix", func(t *testing.T) (net.Conn, net.Conn) { return unixPair(t) }},
	{"ssh", sshPair},
	{"yamux", yamuxPair},
}

// tcpLoopback returns the two ends of a loopback TCP connection.
func tcpLoopback(t *testing.T) (net.Conn, net.Conn) {
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
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// sshPair returns the two ends of one SSH channel: the client's end is the
// net.Conn x/crypto/ssh gives for a forwarded connection (what SSH mode
// pipes), the server's end is the channel behind a small adapter. An
// in-process server on loopback; no sshd.
func sshPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := &ssh.ServerConfig{NoClientAuth: true}
	srvCfg.AddHostKey(signer)
	a, b := tcpLoopback(t)

	type result struct {
		ch  ssh.Channel
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		_, chans, reqs, err := ssh.NewServerConn(b, srvCfg)
		if err != nil {
			accepted <- result{err: err}
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				accepted <- result{err: err}
				return
			}
			go ssh.DiscardRequests(creqs)
			accepted <- result{ch: ch}
		}
	}()
	conn, chans, reqs, err := ssh.NewClientConn(a, "loopback", &ssh.ClientConfig{
		User:            "test",
		HostKeyCallback: ssh.FixedHostKey(signer.PublicKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(conn, chans, reqs)
	t.Cleanup(func() { client.Close() })
	// A direct-tcpip channel: the client's end is the same net.Conn type
	// as ListenUnix's forwarded connections.
	c, err := client.Dial("tcp", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := &channelConn{Channel: r.ch, local: b.LocalAddr(), remote: b.RemoteAddr()}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// channelConn is the server's end of an SSH channel as a net.Conn, without
// deadlines (SSH channels have none; Pipe needs none).
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr              { return c.local }
func (c *channelConn) RemoteAddr() net.Addr             { return c.remote }
func (c *channelConn) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (c *channelConn) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (c *channelConn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

// yamuxPair returns the two ends of a yamux stream over loopback TCP, with
// relay mode's settings and stream adapter.
func yamuxPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := tcpLoopback(t)
	log := slog.New(slog.DiscardHandler)
	g, err := mux.NewSession(a, true, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mux.NewSession(b, false, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); h.Close() })
	c1, err := mux.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	// yamux announces a stream with its first frame.
	if _, err := c1.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	c2, err := mux.Listener{Session: h}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// sendAndClose writes b and half-closes c, reporting failures with
// t.Error: it runs in its own goroutine.
func sendAndClose(t *testing.T, c net.Conn, b []byte) {
	if _, err := c.Write(b); err != nil {
		t.Errorf("write: %v", err)
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Errorf("%T cannot half-close", c)
		return
	}
	if err := cw.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
}

// readAllWithin reads c to its end, or gives up after 10 s: not every end
// has deadlines.
func readAllWithin(c net.Conn) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(c)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(10 * time.Second):
		return nil, errors.New("read did not end within 10 s")
	}
}

func readAll(t *testing.T, c net.Conn) []byte {
	t.Helper()
	b, err := readAllWithin(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// pipeOver runs Pipe between a guest pair and a host pair of tr and returns
// the applications' ends and Pipe's result.
func pipeOver(t *testing.T, tr transport, ctx context.Context, counts *bridge.Counts) (guestApp, hostApp net.Conn, done chan error) {
	t.Helper()
	guestApp, guestEnd := tr.pair(t)
	hostEnd, hostApp := tr.pair(t)
	done = make(chan error, 1)
	go func() { done <- bridge.Pipe(ctx, guestEnd, hostEnd, counts) }()
	return guestApp, hostApp, done
}

func waitPipe(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Pipe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pipe did not return within 10 s")
	}
}

func TestTransportsHalfClose(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			var counts bridge.Counts
			guestApp, hostApp, done := pipeOver(t, tr, context.Background(), &counts)
			// A client that is done talking closes its sending half;
			// the host must still be able to answer.
			sendAndClose(t, guestApp, []byte("request"))
			if got := readAll(t, hostApp); string(got) != "request" {
				t.Fatalf("host read %q", got)
			}
			sendAndClose(t, hostApp, []byte("reply"))
			if got := readAll(t, guestApp); string(got) != "reply" {
				t.Fatalf("guest read %q", got)
			}
			waitPipe(t, done)
			if counts.Up.Load() != 7 || counts.Down.Load() != 5 {
				t.Errorf("counts up %d down %d, want 7 and 5", counts.Up.Load(), counts.Down.Load())
			}
		})
	}
}

func TestTransportsLargeMessage(t *testing.T) {
	// An extended APDU: header, transmit_struct and 65536 bytes, each way.
	up := bytes.Repeat([]byte{0xA5}, 8+32+65536)
	down := bytes.Repeat([]byte{0x5A}, 32+65536+2)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			guestApp, hostApp, done := pipeOver(t, tr, context.Background(), nil)
			go sendAndClose(t, guestApp, up)
			if got := readAll(t, hostApp); !bytes.Equal(got, up) {
				t.Fatalf("host got %d bytes, want %d", len(got), len(up))
			}
			go sendAndClose(t, hostApp, down)
			if got := readAll(t, guestApp); !bytes.Equal(got, down) {
				t.Fatalf("guest got %d bytes, want %d", len(got), len(down))
			}
			waitPipe(t, done)
		})
	}
}

// A blocking call (SCardGetStatusChange) leaves the connection silent until
// the daemon answers; then the guest cancels, and nothing stays half-open.
func TestTransportsBlockingWait(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			guestApp, hostApp, done := pipeOver(t, tr, ctx, nil)
			guestApp.Write([]byte("wait"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(hostApp, buf); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the wait: no byte either way
			hostApp.Write([]byte("event"))
			buf = make([]byte, 5)
			if _, err := io.ReadFull(guestApp, buf); err != nil || string(buf) != "event" {
				t.Fatalf("guest read %q, %v", buf, err)
			}
			cancel()
			waitPipe(t, done)
			// Both applications see the end.
			var wg sync.WaitGroup
			for _, c := range []net.Conn{guestApp, hostApp} {
				wg.Go(func() {
					if _, err := readAllWithin(c); err != nil {
						t.Errorf("after cancel: %v", err)
					}
				})
			}
			wg.Wait()
		})
	}
}

// Serve over each transport: the guest's connection arrives on a listener
// of that kind, goes through the opening and version exchange, and then
// carries a 64 KiB message both ways (the fake daemon echoes) and a
// half-close.
func TestTransportsServe(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
			ln := newPairListener()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() {
				served <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: fake.Socket}.Dial, &bridge.Config{Daemon: fake.Daemon})
			}()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			guestApp, guestEnd := tr.pair(t)
			ln.conns <- guestEnd
			if r := versionExchange(t, guestApp, pcsc.V44); !r.Accepted() {
				t.Fatalf("rejected: %+v", r)
			}
			msg := bytes.Repeat([]byte{0xA5}, 8+32+65536)
			go sendAndClose(t, guestApp, msg)
			if got := readAll(t, guestApp); !bytes.Equal(got, msg) {
				t.Fatalf("echo: %d bytes, want %d", len(got), len(msg))
			}
		})
	}
}

// pairListener accepts the connections sent on conns.
type pairListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPairListener() *pairListener {
	return &pairListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pairListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pairListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pairListener) Addr() net.Addr { return &net.UnixAddr{Name: "pairs", Net: "unix"} }
