package accept

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
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

	// Evict, when every slot is taken, closes the oldest connection that
	// still holds one (preferring those that have not sent a byte, see
	// FirstByte) to make room for the new one, instead of refusing the
	// new one. Peers that connect and stall then cannot keep a real
	// client out for long: each stalled connection is pushed out by the
	// ones that follow. False refuses the new connection.
	Evict bool

	// FirstByte, when set, is how long a new connection may stay silent:
	// one that has not sent a byte by then is closed before handle runs
	// (Refuse is told ErrSilent). Clients that speak first (TLS) send
	// their first bytes at once; zero waits for handle alone.
	FirstByte time.Duration

	// Refuse is told about each connection turned away (ErrBusy,
	// ErrEvicted, ErrSilent) and each accept error that Loop retries,
	// with the listener's address. It must not block. Nil ignores them.
	Refuse func(addr net.Addr, err error)
}

// ErrBusy is what Refuse is told for a connection that found every slot
// taken.
var ErrBusy = errors.New("every slot is taken")

// ErrEvicted is what Refuse is told for a connection closed to make room
// for a newer one (Config.Evict).
var ErrEvicted = errors.New("closed to make room: every slot was taken")

// ErrSilent is what Refuse is told for a connection that sent nothing
// within Config.FirstByte.
var ErrSilent = errors.New("sent nothing in time")

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

	held := &holders{slots: max(cfg.Slots, 1)}
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
		h, victim := held.take(c, cfg.Evict)
		if victim != nil {
			refuse(victim.c.RemoteAddr(), ErrEvicted)
			victim.c.Close()
		}
		if h == nil {
			refuse(c.RemoteAddr(), ErrBusy)
			c.Close()
			continue
		}
		wg.Go(func() {
			release := func() { held.release(h) }
			defer release()
			if cfg.FirstByte > 0 {
				fc, err := firstByte(c, cfg.FirstByte, release)
				if err != nil {
					if !h.evicted() && ctx.Err() == nil {
						refuse(c.RemoteAddr(), ErrSilent)
					}
					c.Close()
					return
				}
				h.heard.Store(true)
				c = fc
			}
			handle(ctx, c, release)
		})
	}
}

// holder is a connection that holds a slot.
type holder struct {
	c     net.Conn
	heard atomic.Bool // it has sent a byte (Config.FirstByte)
	out   atomic.Bool // evicted
}

func (h *holder) evicted() bool { return h.out.Load() }

// holders are the connections that hold a slot, oldest first.
type holders struct {
	slots int
	mu    sync.Mutex
	q     []*holder
}

// take gives c a slot. When every slot is taken, it evicts the oldest
// holder that has not been heard from, else the oldest, and returns it as
// victim for the caller to close; without evict, it returns a nil holder.
func (hs *holders) take(c net.Conn, evict bool) (h, victim *holder) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.q) >= hs.slots {
		if !evict {
			return nil, nil
		}
		i := 0
		for j, o := range hs.q {
			if !o.heard.Load() {
				i = j
				break
			}
		}
		victim = hs.q[i]
		victim.out.Store(true)
		hs.q = slices.Delete(hs.q, i, i+1)
	}
	h = &holder{c: c}
	hs.q = append(hs.q, h)
	return h, victim
}

// release gives h's slot back, if it still holds one; more than once is
// fine.
func (hs *holders) release(h *holder) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if i := slices.Index(hs.q, h); i >= 0 {
		hs.q = slices.Delete(hs.q, i, i+1)
	}
}

// firstByte waits up to d for c's first byte and returns c with that byte
// put back in front. Not every net.Conn has deadlines (SSH channels do
// not): a timer that closes c bounds the wait instead. The timer gives the
// slot back (release) before it closes c, so that the peer, which sees the
// close at once, finds the slot free when it connects again.
func firstByte(c net.Conn, d time.Duration, release func()) (net.Conn, error) {
	t := time.AfterFunc(d, func() {
		release()
		c.Close()
	})
	var b [1]byte
	n, err := c.Read(b[:])
	if !t.Stop() {
		return nil, ErrSilent
	}
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, err
	}
	return &prefixConn{Conn: c, first: b[0], unread: true}, nil
}

// prefixConn is a net.Conn whose first read returns the byte firstByte
// took.
type prefixConn struct {
	net.Conn
	first  byte
	unread bool
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if p.unread && len(b) > 0 {
		p.unread = false
		b[0] = p.first
		return 1, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the connection when the underlying one can.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
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
