package accept

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoLoop serves TCP loopback with Loop and cfg: each handler reads five
// bytes and echoes them, as a handshake would, and keeps the
// connection until the client closes.
func echoLoop(t *testing.T, cfg Config) (addr string, refused func() []error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	cfg.Refuse = func(_ net.Addr, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Loop(ctx, ln, cfg, func(ctx context.Context, c net.Conn, release func()) {
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			b := make([]byte, 5)
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			c.Write(b)
			release()
			io.Copy(io.Discard, c)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Loop: %v", err)
		}
	})
	return ln.Addr().String(), func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), errs...)
	}
}

func hello(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	b := make([]byte, 5)
	_, err = io.ReadFull(c, b)
	return err
}

// TestEvictOldest: with every slot held by connections that sent nothing,
// a client that speaks is served at once: the oldest silent connection is
// closed to make room, instead of the new one being refused (issue 13,
// item 7).
func TestEvictOldest(t *testing.T) {
	addr, refused := echoLoop(t, Config{Slots: 4, Evict: true})
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(50 * time.Millisecond) // all four accepted and holding
	if err := hello(addr); err != nil {
		t.Fatalf("a speaking client with every slot held by silent ones: %v", err)
	}
	idle[0].SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the oldest silent connection: %v, want EOF (evicted)", err)
	}
	if r := refused(); len(r) != 1 || !errors.Is(r[0], ErrEvicted) {
		t.Errorf("refusals %v, want one ErrEvicted", r)
	}
}

// TestFirstByteDeadline: a connection that sends nothing within FirstByte
// is closed before its handler runs, and its slot freed.
func TestFirstByteDeadline(t *testing.T) {
	addr, refused := echoLoop(t, Config{Slots: 1, FirstByte: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent connection closed after %v", d)
	}
	if err := hello(addr); err != nil {
		t.Fatalf("after the silent one: %v", err)
	}
	// The refusal is reported by the silent connection's goroutine once
	// its read returns, which may be after the peer saw the close.
	r := refused()
	for deadline := time.Now().Add(2 * time.Second); len(r) == 0 && time.Now().Before(deadline); r = refused() {
		time.Sleep(10 * time.Millisecond)
	}
	if len(r) != 1 || !errors.Is(r[0], ErrSilent) {
		t.Errorf("refusals %v, want one ErrSilent", r)
	}
}
