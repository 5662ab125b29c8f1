package ccid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/backoff"
)

// Config configures Attach. A nil *Config means DefaultConfig with no
// chardev, which Validate refuses.
type Config struct {
	// Reader is a glob (path.Match) of the host reader names to pass to
	// the guest, e.g. "Yubico YubiKey*". Empty matches every reader.
	Reader string
	// Chardevs are the guest's emulated readers, one usb-ccid device with
	// one ccid-card-passthru each, in order: the first matching host reader
	// takes the first free chardev. A reader that matches when all are
	// taken waits for one to be freed.
	Chardevs []Endpoint
	// Exclusive connects to the card exclusively while it is present:
	// host programs and other guests cannot use it meanwhile. Zero shares
	// the card, wrapping the guest's commands in transactions (IdleRelease).
	Exclusive bool
	// IdleRelease ends the guest's transaction on the host card after the
	// guest has sent no command for this long, so that a host program's
	// transaction can run. The guest's commands closer together than this
	// never interleave with a host program's transaction. Zero means
	// DefaultConfig's 200 ms.
	IdleRelease time.Duration
	// T1 says the emulated reader takes T=1 cards (usb-ccid with
	// x-t1-support=on, newer QEMU than 7.2). Zero: an ATR offering only
	// T=1 is shown to the guest with T=0 added (guestATR), and the bridge
	// keeps T=0's rules for that guest.
	T1 bool
	// RemovalGap is how long the guest sees no card when the host card was
	// removed and inserted again, or reset by another program, between two
	// looks: long enough for the guest's driver to notice. Zero means 1 s.
	RemovalGap time.Duration
	// InitTimeout bounds QEMU's answer to the bridge's Init. Zero means 5 s.
	InitTimeout time.Duration
	// RetryMin and RetryMax bound the wait between attempts to reach
	// QEMU or the PC/SC service. Zero means 250 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// Logger gets lifecycle lines (Info), per message kinds and sizes
	// (Debug), never APDU bytes. Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		IdleRelease: 200 * time.Millisecond,
		RemovalGap:  time.Second,
		InitTimeout: 5 * time.Second,
		RetryMin:    250 * time.Millisecond,
		RetryMax:    5 * time.Second,
	}
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if _, err := path.Match(c.Reader, ""); err != nil {
		return fmt.Errorf("ccid: reader pattern %q: %w", c.Reader, err)
	}
	if len(c.Chardevs) == 0 {
		return errors.New("ccid: no chardev: give the socket of a ccid-card-passthru chardev")
	}
	for _, p := range []struct{ v, def *time.Duration }{
		{&c.IdleRelease, &d.IdleRelease}, {&c.RemovalGap, &d.RemovalGap},
		{&c.InitTimeout, &d.InitTimeout}, {&c.RetryMin, &d.RetryMin}, {&c.RetryMax, &d.RetryMax},
	} {
		if *p.v < 0 {
			return errors.New("ccid: negative duration")
		}
		if *p.v == 0 {
			*p.v = *p.def
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Attach passes the host's readers matching cfg.Reader to the guest behind
// cfg.Chardevs until ctx ends, reconnecting to QEMU when it restarts and to
// the PC/SC service when it comes back. It returns ctx's error, or the first
// error that retrying cannot mend: a chardev peer that is not QEMU's
// ccid-card-passthru (ErrNotQEMU), a listener that cannot be opened.
// It is New and Run; use those to read Status meanwhile.
func Attach(ctx context.Context, host Host, cfg *Config) error {
	b, err := New(host, cfg)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// Bridge is a running Attach.
type Bridge struct {
	cfg   Config
	host  Host
	slots []*slot
}

// New checks cfg and opens the listening chardevs, so that a socket that
// cannot be opened is reported before anything runs.
func New(host Host, cfg *Config) (*Bridge, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	b := &Bridge{cfg: *cfg, host: host}
	if err := b.cfg.Validate(); err != nil {
		return nil, err
	}
	for _, ep := range b.cfg.Chardevs {
		conn, err := newConnector(ep, backoff.Backoff{Min: b.cfg.RetryMin, Max: b.cfg.RetryMax})
		if err != nil {
			for _, s := range b.slots {
				s.conn.close()
			}
			return nil, err
		}
		b.slots = append(b.slots, &slot{cfg: &b.cfg, host: host, conn: conn, poke: make(chan struct{}, 1),
			log: b.cfg.Logger.With("chardev", ep.String())})
	}
	return b, nil
}

// Run serves until ctx ends (see Attach); it closes the listeners on
// return. Call it once.
func (b *Bridge) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, s := range b.slots {
		wg.Go(func() {
			defer s.conn.close()
			if err := s.run(ctx); err != nil && ctx.Err() == nil {
				cancel(err)
			}
		})
	}
	wg.Go(func() { watch(ctx, b.host, &b.cfg, b.slots) })
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// want is what a slot's guest should see: the bound host reader (or none),
// whether a card is in it, its ATR, and a count that changes each time the
// card was removed and inserted.
type want struct {
	reader  string
	present bool
	atr     []byte
	gen     uint32
}

// watch follows the host's readers and cards (SCardGetStatusChange with
// PnP) and binds matching readers to free slots.
func watch(ctx context.Context, host Host, cfg *Config, slots []*slot) {
	log := cfg.Logger
	b := backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}
	for ctx.Err() == nil {
		hc, err := host.EstablishContext()
		if err == nil {
			b.Reset()
			err = watchContext(ctx, hc, cfg, slots)
			hc.Release()
		}
		for _, s := range slots {
			s.set(want{}) // the readers are gone with the service
		}
		if ctx.Err() != nil {
			return
		}
		wait := b.Next()
		log.Warn("ccid: host PC/SC unavailable, retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// statusWait bounds each wait for reader events, so that readers are
// listed again now and then even without PnP events (tests shorten it).
var statusWait = 5 * time.Second

func watchContext(ctx context.Context, hc HostContext, cfg *Config, slots []*slot) error {
	stop := context.AfterFunc(ctx, func() { hc.Cancel() })
	defer stop()
	log := cfg.Logger
	states := []ReaderState{{Reader: PnPNotification}}
	bound := map[string]*slot{}
	waiting := map[string]bool{}
	gens := map[string]uint32{}
	for ctx.Err() == nil {
		names, err := hc.ListReaders()
		if err != nil {
			return err
		}
		// Keep the states of known readers; new ones start unaware.
		next := states[:1:1]
		for _, n := range names {
			if cfg.Reader != "" {
				if ok, _ := path.Match(cfg.Reader, n); !ok {
					continue
				}
			}
			i := slices.IndexFunc(states, func(r ReaderState) bool { return r.Reader == n })
			if i > 0 {
				next = append(next, states[i])
			} else {
				next = append(next, ReaderState{Reader: n})
			}
		}
		states = next
		// Unbind readers that are gone.
		for n, s := range bound {
			if !slices.Contains(names, n) {
				log.Info("ccid: reader unplugged", "reader", n)
				s.set(want{})
				delete(bound, n)
			}
		}
		for n := range waiting {
			if !slices.Contains(names, n) {
				delete(waiting, n)
			}
		}
		err = hc.GetStatusChange(statusWait, states)
		switch {
		case errors.Is(err, ErrTimeout), errors.Is(err, ErrReaderUnavailable):
			continue // nothing new; a reader went: list them again
		case err != nil:
			return err
		}
		for i := range states {
			r := &states[i]
			r.CurrentState = r.EventState &^ StateChanged
			if i == 0 || r.EventState&(StateUnknown|StateUnavailable) != 0 {
				continue
			}
			s := bound[r.Reader]
			if s == nil {
				s = freeSlot(slots, bound)
				if s == nil {
					if !waiting[r.Reader] {
						log.Info("ccid: reader matches but every chardev is taken", "reader", r.Reader)
						waiting[r.Reader] = true
					}
					continue
				}
				delete(waiting, r.Reader)
				bound[r.Reader] = s
				s.log.Info("ccid: reader bound", "reader", r.Reader)
			}
			present := r.EventState&StatePresent != 0 && r.EventState&StateMute == 0
			// The high 16 bits count insertions and removals: a change
			// while present means the card was swapped between two looks.
			if present && r.EventState>>16 != gens[r.Reader]>>16 {
				gens[r.Reader] = r.EventState
			}
			s.set(want{reader: r.Reader, present: present, atr: slices.Clone(r.ATR), gen: gens[r.Reader] >> 16})
		}
	}
	return ctx.Err()
}

func freeSlot(slots []*slot, bound map[string]*slot) *slot {
	for _, s := range slots {
		taken := false
		for _, b := range bound {
			taken = taken || b == s
		}
		if !taken {
			return s
		}
	}
	return nil
}
