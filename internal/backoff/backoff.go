package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait between attempts to reach a peer: it starts at Min,
// doubles after each attempt up to Max, and starts over at Min after Reset.
// Each wait is spread over [d/2, d], so that many guests do not reconnect in
// lockstep after the other end comes back.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the wait before the next attempt, and doubles the one after.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.Max)
	return d
}

// Reset makes the next wait Min again, after a connection that worked.
func (b *Backoff) Reset() { b.cur = b.Min }

// Sleep waits d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
