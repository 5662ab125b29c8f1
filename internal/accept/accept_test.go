package accept

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeListener returns the errors in errs from Accept, then blocks until
// it is closed.
type fakeListener struct {
	errs   chan error
	closed chan struct{}
	once   atomic.Bool
}

func newFake(errs ...error) *fakeListener {
	l := &fakeListener{errs: make(chan error, len(errs)), closed: make(chan struct{})}
	for _, e := range errs {
		l.errs <- e
	}
	return l
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	if !l.once.Swap(true) {
		close(l.closed)
	}
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.UnixAddr{Name: "fake", Net: "unix"} }

func TestLoopRetriesSystemErrors(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	end := errors.New("session shutdown")
	ln := newFake(emfile, emfile, end)
	var refused atomic.Int32
	err := Loop(context.Background(), ln, Config{Refuse: func(_ net.Addr, err error) {
		if !errors.Is(err, syscall.EMFILE) {
			t.Errorf("refused with %v", err)
		}
		refused.Add(1)
	}}, func(context.Context, net.Conn, func()) {})
	var ae *Error
	if !errors.As(err, &ae) || ae.Err != end {
		t.Fatalf("Loop: %v, want an *Error wrapping %v", err, end)
	}
	if refused.Load() != 2 {
		t.Errorf("%d refusals, want 2", refused.Load())
	}
}

func TestLoopCancel(t *testing.T) {
	ln := newFake()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Loop(ctx, ln, Config{}, func(context.Context, net.Conn, func()) {}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Loop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not return after cancel")
	}
}

func TestLoopSlots(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan struct{})
	busy := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- Loop(ctx, ln, Config{Slots: 1, Refuse: func(_ net.Addr, err error) {
			if errors.Is(err, ErrBusy) {
				busy <- struct{}{}
			}
		}}, func(ctx context.Context, c net.Conn, release func()) {
			defer c.Close()
			held <- struct{}{}
			<-ctx.Done() // hold the slot until Loop ends
		})
	}()
	a, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	<-held
	b, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	<-busy
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("second connection: %v, want it closed", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Loop: %v", err)
	}
}
