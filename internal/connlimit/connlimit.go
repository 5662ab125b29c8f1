package connlimit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Defaults, well below pcscd's 200 clients (PCSC_MAX_CONTEXT_THREADS,
// src/pcscd.h.in:56 in pcsc-lite 2.5.1): libpcsclite opens one connection
// per context (SCardEstablishContext, src/winscard_clnt.c:567-692), and a
// busy guest program rarely holds more than a few.
const (
	DefaultPerGuest = 32
	DefaultTotal    = 150
	DefaultQuiet    = 10 * time.Second
	DefaultRefusal  = 2 * time.Second
	maxRefusing     = 64
)

// Config configures a Limiter. The zero value is DefaultConfig.
type Config struct {
	// PerGuest is the most connections one guest may hold open at once.
	// Zero means DefaultPerGuest.
	PerGuest int
	// Total is the most connections the process holds open at once, over
	// all guests: it keeps room in pcscd for the host's own programs.
	// Zero means DefaultTotal.
	Total int
	// Quiet is how long refusals must stop before the next one is logged
	// again: a flood is logged once per burst, with the count of the
	// previous burst. Zero means DefaultQuiet.
	Quiet time.Duration
	// Refusal bounds how long Refuse waits for a refused connection's
	// opening message. Zero means DefaultRefusal.
	Refusal time.Duration
	// Logger receives the refusals; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{PerGuest: DefaultPerGuest, Total: DefaultTotal, Quiet: DefaultQuiet, Refusal: DefaultRefusal}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.PerGuest < 0 || c.Total < 0 || c.Quiet < 0 || c.Refusal < 0:
		return errors.New("connlimit: limits must not be negative")
	case c.PerGuest > 0 && c.Total > 0 && c.PerGuest > c.Total:
		return fmt.Errorf("connlimit: per-guest cap %d is above the total cap %d", c.PerGuest, c.Total)
	}
	return nil
}

// Limiter counts the open connections by guest. Its methods are safe for
// concurrent use.
type Limiter struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	open     map[string]int
	total    int
	refusing int       // Refuse calls under way
	last     time.Time // the last refusal
	burst    int       // refusals since the last one logged
}

// New returns a Limiter for c; nil means DefaultConfig.
func New(c *Config) (*Limiter, error) {
	if c == nil {
		c = DefaultConfig()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := *c
	d := DefaultConfig()
	if cfg.PerGuest == 0 {
		cfg.PerGuest = d.PerGuest
	}
	if cfg.Total == 0 {
		cfg.Total = max(d.Total, cfg.PerGuest)
	}
	if cfg.Quiet == 0 {
		cfg.Quiet = d.Quiet
	}
	if cfg.Refusal == 0 {
		cfg.Refusal = d.Refusal
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{cfg: cfg, log: log, open: map[string]int{}}, nil
}

// Acquire takes a connection slot for guest. It returns the function that
// gives the slot back (call it once, when the connection closes), or
// false when the guest or the process is at its cap; the caller then
// refuses the connection (Refuse).
func (l *Limiter) Acquire(guest string) (release func(), ok bool) {
	return l.acquire(guest, l.cfg.PerGuest)
}

// AcquireCancel is Acquire for the temporary connection of SCardCancel
// (its opening message is SCARD_CANCEL, pcsc.Opening): it may go over the
// guest's cap by as many again, so that a guest whose programs hold all
// its connections in waits can still cancel them, but not over the
// process's. It lasts one request.
func (l *Limiter) AcquireCancel(guest string) (release func(), ok bool) {
	return l.acquire(guest, 2*l.cfg.PerGuest)
}

func (l *Limiter) acquire(guest string, limit int) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.open[guest]
	if n >= limit || l.total >= l.cfg.Total {
		l.refused(guest, n)
		return nil, false
	}
	l.open[guest] = n + 1
	l.total++
	var once sync.Once
	return func() { once.Do(func() { l.release(guest) }) }, true
}

func (l *Limiter) release(guest string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[guest]--; l.open[guest] <= 0 {
		delete(l.open, guest)
	}
	l.total--
}

// Open returns the connections guest holds, and the process's total.
func (l *Limiter) Open(guest string) (n, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[guest], l.total
}

// refused logs a refusal, once per burst; l.mu is held.
func (l *Limiter) refused(guest string, n int) {
	now := time.Now()
	quiet := now.Sub(l.last) >= l.cfg.Quiet
	l.last = now
	if !quiet {
		l.burst++
		return
	}
	which, limit := "per-guest", l.cfg.PerGuest
	if n < l.cfg.PerGuest {
		which, limit = "total", l.cfg.Total
	}
	l.log.Warn("refusing guest connections over the cap", "guest", guest, "cap", which, "limit", limit,
		"guest_open", n, "total_open", l.total, "refused_in_last_burst", l.burst)
	l.burst = 0
}

// Refuse answers the opening message of a connection over a cap as a
// pcscd that cannot serve it, with SCARD_E_NO_SERVICE, which the guest's
// SCardEstablishContext returns at once ("Service not available"; the
// client returns the rv of CMD_VERSION's reply as it is,
// src/winscard_clnt.c:635-639 in pcsc-lite 2.5.1), and closes conn. It
// waits at most Config.Refusal for the opening message, and when too many
// refusals are under way it closes conn without an answer, so that a flood
// holds no more than a bounded number of goroutines.
func (l *Limiter) Refuse(conn net.Conn) {
	l.mu.Lock()
	busy := l.refusing >= maxRefusing
	if !busy {
		l.refusing++
	}
	l.mu.Unlock()
	if busy {
		conn.Close()
		return
	}
	defer func() {
		l.mu.Lock()
		l.refusing--
		l.mu.Unlock()
	}()
	// Not every net.Conn has deadlines (SSH channels do not): a timer
	// that closes the connection bounds the wait instead.
	t := time.AfterFunc(l.cfg.Refusal, func() { conn.Close() })
	defer t.Stop()
	defer conn.Close()
	var buf [pcsc.OpeningMax]byte
	o, raw, err := pcsc.ReadOpening(conn, &buf)
	if err != nil {
		return
	}
	conn.Write(pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService))
	// Let the client read the answer before the close.
	io.Copy(io.Discard, io.LimitReader(conn, pcsc.OpeningMax))
}
