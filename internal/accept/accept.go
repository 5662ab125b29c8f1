package accept

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/cardshare/cardshare/internal/backoff"
)

// Config tunes Loop.
type Config struct {
	// Slots caps the connections handled at once: a connection holds a
	// slot from Accept until its handler releases it or returns. One that
	// finds every slot taken is passed to Refuse with ErrBusy and closed
	// at once, so peers that stall cost at most Slots handlers. Zero
	// means 1.
	Slots int

	// Refuse is told about each connection turned away (ErrBusy) and each
	// accept error that Loop retries, with the listener's address. It
	// must not block. Nil ignores them.
	Refuse func(addr net.Addr, err error)
}

// ErrBusy is what Refuse is told for a connection that found every slot
// taken.
var ErrBusy = errors.New("every slot is taken")

// Error is the accept error that ended a Loop: the listener failed for
// good (closed under it, or a session listener whose session ended).
type Error struct{ Err error }

func (e *Error) Error() string { return "accept: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Accept errors that are the system's, not the listener's end (out of
// descriptors, a connection reset before it was accepted) are retried after
// a pause that grows from minPause to maxPause, as net/http does.
const (
	minPause = 5 * time.Millisecond
	maxPause = time.Second
)

// Loop accepts connections on ln until ctx is done or ln fails for good,
// and runs handle for each in its own goroutine, holding a slot (see
// Config.Slots) until handle calls release (more than once is fine) or
// returns. handle's context is done when Loop's is, or when ln failed.
//
// Loop closes ln when ctx is done and returns nil then; when ln fails it
// returns an *Error. Either way it returns after every handle it started
// has returned.
func Loop(ctx context.Context, ln net.Listener, cfg Config, handle func(ctx context.Context, c net.Conn, release func())) error {
	refuse := cfg.Refuse
	if refuse == nil {
		refuse = func(net.Addr, error) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	slots := make(chan struct{}, max(cfg.Slots, 1))
	pause := backoff.Backoff{Min: minPause, Max: maxPause}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return &Error{Err: err}
			}
			refuse(ln.Addr(), &Error{Err: err})
			if !backoff.Sleep(ctx, pause.Next()) {
				return nil
			}
			continue
		}
		pause.Reset()
		select {
		case slots <- struct{}{}:
		default:
			refuse(c.RemoteAddr(), ErrBusy)
			c.Close()
			continue
		}
		wg.Go(func() {
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			handle(ctx, c, release)
		})
	}
}

// retryable reports whether an accept error may pass: a timeout, or an error
// of the system rather than the listener's end. A closed listener, or one
// whose session ended (yamux, SSH), is done.
func retryable(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var errno syscall.Errno
	return errors.As(err, &errno)
}
