package lograte

import (
	"sync"
	"time"
)

// Limiter lets one event a second through. Its zero value is ready.
type Limiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// Allow reports whether an event at now may be logged, and how many were
// dropped since the last one that was.
func (r *Limiter) Allow(now time.Time) (dropped int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < time.Second {
		r.dropped++
		return 0, false
	}
	dropped, r.dropped, r.last = r.dropped, 0, now
	return dropped, true
}
