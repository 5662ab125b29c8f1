package forward

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// StartGate bounds how many guests set up their forward at once: the SSH
// connection (TCP, banner, key exchange, authentication), the guest
// socket's preparation and the listen. A hundred guests that all start at
// once on one sshd ask it for a hundred re-executed sshd processes, key
// exchanges and shells in the same second; on a small machine the last
// banners then come after the 3 s banner timeout, those connections are
// dropped and tried again, and the retries (with the half-done work they
// throw away) made the start of 100 guests take half a minute instead of
// a few seconds (issue 13, item 10). OpenSSH's default MaxStartups
// (10:30:100) also starts refusing at 10 unauthenticated connections.
//
// A guest gives its slot back when its socket is listening, when the
// attempt fails, or after Hold at the latest, whichever comes first: a
// guest that does not answer (a VM still booting behind a NAT port) delays
// the others by at most Hold per attempt, never for its whole timeout.
//
// A nil *StartGate lets every guest start at once.
type StartGate struct {
	slots   chan struct{}
	hold    time.Duration
	waiting atomic.Int32 // guests in enter, waiting for a slot
}

// DefaultStartSlots and DefaultStartHold are what NewStartGate uses for
// zero arguments: below OpenSSH's default MaxStartups, and about what
// one guest's set-up takes on a loaded 2-core machine.
const (
	DefaultStartSlots = 8
	DefaultStartHold  = 2 * time.Second
)

// NewStartGate returns a StartGate of n slots, each held for at most
// hold. Zero or less means DefaultStartSlots and DefaultStartHold.
func NewStartGate(n int, hold time.Duration) *StartGate {
	if n <= 0 {
		n = DefaultStartSlots
	}
	if hold <= 0 {
		hold = DefaultStartHold
	}
	return &StartGate{slots: make(chan struct{}, n), hold: hold}
}

// enter waits for a slot, or for ctx to end (then it returns ctx's error).
// The returned leave gives the slot back; calling it again does nothing,
// and the slot comes back by itself after the gate's hold.
func (g *StartGate) enter(ctx context.Context) (leave func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	give := func() { once.Do(func() { <-g.slots }) }
	t := time.AfterFunc(g.hold, give)
	return func() {
		t.Stop()
		give()
	}, nil
}

// quietPoll is how often quiet looks at the gate.
const quietPoll = 50 * time.Millisecond

// quiet waits until no guest holds or waits for a slot, for at most max
// or until ctx ends: work that can wait (reading a guest's pcsc-lite
// release) then does not take CPU from guests whose sockets are not there
// yet. A nil gate is always quiet.
func (g *StartGate) quiet(ctx context.Context, max time.Duration) {
	if g == nil {
		return
	}
	deadline := time.Now().Add(max)
	for len(g.slots) > 0 || g.waiting.Load() > 0 {
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(quietPoll):
		}
	}
}
