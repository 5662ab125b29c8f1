package bridge_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// unixPair returns the two ends of a connected Unix stream socket.
func unixPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("unix", ln.Addr().String())
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

func TestPipeHalfClose(t *testing.T) {
	// guestApp <-> [guestEnd | Pipe | hostEnd] <-> hostApp
	guestApp, guestEnd := unixPair(t)
	hostEnd, hostApp := unixPair(t)
	done := make(chan error, 1)
	var counts bridge.Counts
	go func() { done <- bridge.Pipe(context.Background(), guestEnd, hostEnd, &counts) }()

	// The guest sends a request and closes its sending half, as a client
	// that is done talking; the host must still be able to answer.
	guestApp.Write([]byte("request"))
	guestApp.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(hostApp)
	if err != nil || string(got) != "request" {
		t.Fatalf("host read %q, %v", got, err)
	}
	hostApp.Write([]byte("reply"))
	hostApp.Close()
	got, err = io.ReadAll(guestApp)
	if err != nil || string(got) != "reply" {
		t.Fatalf("guest read %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	if counts.Up.Load() != 7 || counts.Down.Load() != 5 {
		t.Errorf("counts up %d down %d, want 7 and 5", counts.Up.Load(), counts.Down.Load())
	}
}

func TestPipeCancelClosesBoth(t *testing.T) {
	guestApp, guestEnd := unixPair(t)
	hostEnd, hostApp := unixPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Pipe(ctx, guestEnd, hostEnd, nil) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	// Both applications see the end: nothing stays half-open.
	for _, c := range []net.Conn{guestApp, hostApp} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read after cancel: %v, want EOF", err)
		}
	}
}

func TestPipeLargeMessage(t *testing.T) {
	guestApp, guestEnd := unixPair(t)
	hostEnd, hostApp := unixPair(t)
	go bridge.Pipe(context.Background(), guestEnd, hostEnd, nil)
	// An extended APDU: header, transmit_struct and 65536 bytes.
	msg := bytes.Repeat([]byte{0xA5}, 8+32+65536)
	go func() { guestApp.Write(msg); guestApp.(*net.UnixConn).CloseWrite() }()
	got, err := io.ReadAll(hostApp)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
}

type env struct {
	fake   *pcsctest.Daemon
	socket string
	log    *logtest.Buffer
	stats  *bridge.Stats
	done   chan error
	cancel context.CancelFunc
}

// serve runs bridge.Serve from a guest socket to a fake daemon.
func serve(t *testing.T, d pcsc.Daemon) *env {
	t.Helper()
	return serveWith(t, pcsctest.Start(t, d), func(c *bridge.Config) { c.Daemon = d })
}

// serveWith runs bridge.Serve from a guest socket to fake, with the
// configuration mod makes.
func serveWith(t *testing.T, fake *pcsctest.Daemon, mod func(*bridge.Config)) *env {
	t.Helper()
	e := serveDial(t, hostpcsc.Socket{Path: fake.Socket}.Dial, mod)
	e.fake = fake
	return e
}

// serveDial runs bridge.Serve from a guest socket to what dial reaches,
// with the configuration mod makes.
func serveDial(t *testing.T, dial bridge.DialFunc, mod func(*bridge.Config)) *env {
	t.Helper()
	e := &env{log: new(logtest.Buffer), stats: new(bridge.Stats), done: make(chan error, 1)}
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.socket = filepath.Join(dir, "guest.comm")
	ln, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, e.cancel = context.WithCancel(context.Background())
	cfg := &bridge.Config{
		Logger:         logtest.New(t, e.log, slog.LevelDebug),
		OpeningTimeout: 2 * time.Second,
		Stats:          e.stats,
	}
	if mod != nil {
		mod(cfg)
	}
	go func() { e.done <- bridge.Serve(ctx, ln, dial, cfg) }()
	t.Cleanup(func() {
		e.cancel()
		if err := <-e.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func versionExchange(t *testing.T, c net.Conn, v pcsc.Version) pcsc.VersionReply {
	t.Helper()
	if _, err := c.Write(pcsc.AppendVersionRequest(nil, v)); err != nil {
		t.Fatal(err)
	}
	var buf [12]byte
	r, err := pcsc.ReadVersionReply(c, &buf)
	if err != nil {
		t.Fatalf("read version reply: %v", err)
	}
	return r
}

func TestServeRelays(t *testing.T) {
	e := serve(t, pcsc.Daemon{Version: pcsc.V44})
	if _, ok := e.stats.Client(); ok {
		t.Error("Stats.Client known before any connection")
	}
	c := e.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("rejected: %+v", r)
	}
	c.Write([]byte("establish"))
	buf := make([]byte, 9)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "establish" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.(*net.UnixConn).CloseWrite()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("after half-close: %v, want EOF", err)
	}
	waitFor(t, func() bool { return e.stats.Open.Load() == 0 && e.fake.Conns() == 0 })
	if strings.Contains(e.log.String(), "establish") || strings.Contains(e.log.String(), hex.EncodeToString([]byte("establish"))) {
		t.Errorf("payload bytes in the log:\n%s", e.log)
	}
}

func TestServeCancelSocket(t *testing.T) {
	e := serve(t, pcsc.Daemon{Version: pcsc.V44})
	c := e.dial(t)
	c.Write([]byte{8, 0, 0, 0, 0x0d, 0, 0, 0, 0x75, 0x31, 0x40, 0x63, 0, 0, 0, 0})
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, []byte{0x75, 0x31, 0x40, 0x63, 0, 0, 0, 0}) {
		t.Fatalf("cancel reply %x, %v", got, err)
	}
}

// A 4.4 client (pcsc-lite ≤ 2.2.3) against a strict 4.5 daemon (2.3.0–2.4.0)
// fails when the relay does not know the daemon and so cannot translate
// (the agent end of relay mode); the host log must say why and what to do.
func TestServeMismatchLogged(t *testing.T) {
	e := serveWith(t, pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V45}), nil)
	c := e.dial(t)
	if r := versionExchange(t, c, pcsc.V44); r.Accepted() || r.Version != pcsc.V45 {
		t.Fatalf("reply %+v, want a 4.5 rejection", r)
	}
	c.Close()
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "rejected by host pcscd") })
	log := e.log.String()
	for _, want := range []string{"level=ERROR", "4.4", "1.8.24–2.2.3", "4.5 strict", "2.3.0–2.4.0", "hint=", "2.4.1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A pcsc-lite 2.4.1+ client retries with the daemon's version on the same
// connection; that is legal and must work. (A relay that knows the daemon
// translates instead: proxy_test.go.)
func TestServeFallback(t *testing.T) {
	e := serveWith(t, pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44}), nil)
	c := e.dial(t)
	if r := versionExchange(t, c, pcsc.V45); r.Accepted() {
		t.Fatalf("4.5 accepted by a 4.4 daemon")
	}
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("fallback to 4.4 rejected: %+v", r)
	}
	c.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.log.String(), "level=ERROR") {
		t.Errorf("fallback logged an error:\n%s", e.log)
	}
	// Stats name the guest library's own version, not the fallback.
	if v, ok := e.stats.Client(); !ok || v != pcsc.V45 {
		t.Errorf("Stats.Client = %v, %v; want 4.5", v, ok)
	}
}

func TestServeBadOpening(t *testing.T) {
	tests := map[string][]byte{
		"garbage":         []byte("GET / HTTP/1.1\r\n\r\n"),
		"huge length":     {0xff, 0xff, 0xff, 0xff, 0x11, 0, 0, 0},
		"establish first": {12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	e := serve(t, pcsc.Daemon{Version: pcsc.V44})
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			c := e.dial(t)
			c.Write(in)
			// Closing with unread input resets the connection.
			if got, err := io.ReadAll(c); len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
				t.Errorf("got %q, %v; want a close", got, err)
			}
		})
	}
	// A silent client is dropped after the opening timeout.
	c := e.dial(t)
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent client: %v, want EOF", err)
	}
	if e.fake.Conns() != 0 {
		t.Errorf("bad openings reached the daemon")
	}
	// The listener still serves good clients.
	if r := versionExchange(t, e.dial(t), pcsc.V44); !r.Accepted() {
		t.Errorf("good client rejected after bad ones")
	}
}

func TestServeDaemonDown(t *testing.T) {
	e := serve(t, pcsc.Daemon{Version: pcsc.V44})
	e.fake.Close()
	os.Remove(e.fake.Socket)
	c := e.dial(t)
	r := versionExchange(t, c, pcsc.V44)
	if r.RV != pcsc.ReturnNoService {
		t.Fatalf("rv = %#x, want SCARD_E_NO_SERVICE", r.RV)
	}
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "connect to host pcscd") })
}

func TestServeStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := serve(t, pcsc.Daemon{Version: pcsc.V44})
		var conns []net.Conn
		for range 20 {
			c := e.dial(t)
			versionExchange(t, c, pcsc.V44)
			conns = append(conns, c)
		}
		waitFor(t, func() bool { return e.stats.Open.Load() == 20 })
		e.cancel()
		if err := <-e.done; err != nil {
			t.Fatal(err)
		}
		e.done <- nil // for the cleanup
		for _, c := range conns {
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("client after stop: %v, want EOF", err)
			}
		}
		e.fake.Close()
	}()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
