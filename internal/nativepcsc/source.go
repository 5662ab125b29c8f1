package nativepcsc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/accept"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

// Config tunes a Source. The zero value of a field means its default.
type Config struct {
	// Logger receives lifecycle and per-connection events, never
	// payloads. Nil discards.
	Logger *slog.Logger
	// MaxConnections bounds the guest connections served at once; more
	// are refused (pcscd's PCSC_MAX_CONTEXT_THREADS is 200). Default 256.
	MaxConnections int
	// MaxContexts bounds the contexts one connection may hold. A
	// libpcsclite client holds one per connection, and establishes a
	// second only when its handle collides. Default 16.
	MaxContexts int
	// MaxCards bounds the card handles of one connection (pcscd's
	// PCSC_MAX_CONTEXT_CARD_HANDLES, -s, is 200). Default 200.
	MaxCards int
	// MinPoll is the shortest interval between two host waits that
	// returned without a change: it bounds the event loop's rate where
	// SCardGetStatusChange returns at once (Wine) or cannot watch for
	// readers (macOS). Default 100 ms.
	MinPoll time.Duration
	// MaxPoll is the longest single host wait, after which the loop
	// lists the readers again; it is also the longest back-off while the
	// host service is down. Default 2 s.
	MaxPoll time.Duration
	// WriteTimeout bounds a write to a guest that does not read: the
	// connection is closed after it. Default 30 s.
	WriteTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		MaxConnections: 256,
		MaxContexts:    16,
		MaxCards:       200,
		MinPoll:        100 * time.Millisecond,
		MaxPoll:        2 * time.Second,
		WriteTimeout:   30 * time.Second,
	}
}

// Validate checks c after defaults were applied.
func (c *Config) Validate() error {
	switch {
	case c.MaxConnections < 1, c.MaxContexts < 1, c.MaxCards < 1:
		return errors.New("nativepcsc: limits must be positive")
	case c.MinPoll <= 0, c.MaxPoll < c.MinPoll:
		return errors.New("nativepcsc: want 0 < MinPoll <= MaxPoll")
	case c.WriteTimeout <= 0:
		return errors.New("nativepcsc: WriteTimeout must be positive")
	}
	return nil
}

func (c *Config) withDefaults() *Config {
	d := DefaultConfig()
	if c == nil {
		return d
	}
	out := *c
	for _, f := range []struct{ v, def *int }{{&out.MaxConnections, &d.MaxConnections}, {&out.MaxContexts, &d.MaxContexts}, {&out.MaxCards, &d.MaxCards}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{{&out.MinPoll, &d.MinPoll}, {&out.MaxPoll, &d.MaxPoll}, {&out.WriteTimeout, &d.WriteTimeout}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	out.MaxPoll = max(out.MaxPoll, out.MinPoll)
	return &out
}

// ErrClosed is returned by Dial after Close.
var ErrClosed = errors.New("nativepcsc: source closed")

// ErrBusy is returned by Dial when MaxConnections guests are connected.
var ErrBusy = errors.New("nativepcsc: too many guest connections")

// Source serves the pcsc-lite protocol from a scard.Library. It is the
// native implementation of the host-side source (internal/hostpcsc):
// Dial, Probe, String.
type Source struct {
	lib scard.Library
	cfg *Config
	log *slog.Logger
	hub *hub

	mu       sync.Mutex
	started  bool // the event loop runs
	closed   bool
	conns    map[*conn]struct{}
	handles  map[uint32]struct{}  // every context and card handle in use
	contexts map[uint32]*gcontext // for SCARD_CANCEL, which names any connection's context
	wg       sync.WaitGroup
}

// New returns a Source over lib. Nothing is called in lib before the
// first Dial, Serve or Probe.
func New(lib scard.Library, cfg *Config) (*Source, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{
		lib: lib, cfg: cfg, log: log,
		hub:      newHub(lib, cfg, log),
		conns:    make(map[*conn]struct{}),
		handles:  make(map[uint32]struct{}),
		contexts: make(map[uint32]*gcontext),
	}, nil
}

// String names the source for logs, status and doctor.
func (s *Source) String() string { return "native PC/SC (" + s.lib.String() + ")" }

// Library returns the library the source calls.
func (s *Source) Library() scard.Library { return s.lib }

// Daemon is what a Source answers as: a pcsc-lite 2.5 daemon (protocol
// 4.6) that serves 4.4 and 4.5 clients natively, with 16-record arrays
// for the old reader state API.
var Daemon = pcsc.Daemon{Version: pcsc.V46, Lenient: true, Readers: pcsc.DefaultSlots}

// Probe checks that the host's PC/SC answers (a context can be
// established) and returns Daemon.
func (s *Source) Probe(ctx context.Context) (pcsc.Daemon, error) {
	type result struct {
		c   scard.Context
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := s.lib.EstablishContext(scard.ScopeSystem)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return pcsc.Daemon{}, fmt.Errorf("nativepcsc: %s: establish a context: %w", s.lib, r.err)
		}
		s.lib.ReleaseContext(r.c)
		return Daemon, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				s.lib.ReleaseContext(r.c)
			}
		}()
		return pcsc.Daemon{}, fmt.Errorf("nativepcsc: %s: %w", s.lib, ctx.Err())
	}
}

// start runs the event loop once, and waits for its first scan.
func (s *Source) start(ctx context.Context) {
	s.mu.Lock()
	if !s.started && !s.closed {
		s.started = true
		go s.hub.run()
	}
	s.mu.Unlock()
	select {
	case <-s.hub.ready:
	case <-ctx.Done():
	}
}

// Dial returns one end of a socket pair whose other end the daemon end serves.
func (s *Source) Dial(ctx context.Context) (net.Conn, error) {
	client, server, err := socketPair()
	if err != nil {
		return nil, err
	}
	c, err := s.add(server, nil)
	if err != nil {
		client.Close()
		server.Close()
		return nil, err
	}
	s.start(ctx)
	go c.serve()
	return client, nil
}

// ServeOpened serves one guest connection until it ends or ctx is done,
// and closes it. opening is its opening message (CMD_VERSION or
// SCARD_CANCEL) if the core (bridge.Local) read it, else nil. Over
// MaxConnections, an opening gets SCARD_E_NO_SERVICE, as from pcscd.
func (s *Source) ServeOpened(ctx context.Context, nc net.Conn, opening []byte) error {
	c, err := s.add(nc, opening)
	if err != nil {
		if o, raw, rerr := pcsc.ReadOpening(bytes.NewReader(opening), new([pcsc.OpeningMax]byte)); rerr == nil {
			nc.Write(pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService))
		}
		nc.Close()
		return err
	}
	s.start(ctx)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	return c.serve()
}

// Serve accepts connections from ln and serves each until ctx ends or ln
// fails; it closes ln and returns after every connection it served has
// ended. It uses the project's one accept loop (internal/accept).
func (s *Source) Serve(ctx context.Context, ln net.Listener) error {
	err := accept.Loop(ctx, ln, accept.Config{Slots: s.cfg.MaxConnections}, func(ctx context.Context, nc net.Conn, _ func()) {
		s.ServeOpened(ctx, nc, nil)
	})
	if err != nil {
		return fmt.Errorf("nativepcsc: %w", err)
	}
	return nil
}

func (s *Source) add(nc net.Conn, opening []byte) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case len(s.conns) >= s.cfg.MaxConnections:
		return nil, ErrBusy
	}
	c := newConn(s, nc, opening)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c, nil
}

func (s *Source) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Close stops the event loop, ends every guest connection (releasing
// their host contexts) and waits for them.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.nc.Close()
	}
	started := s.started
	s.mu.Unlock()
	s.wg.Wait()
	if started {
		s.hub.close()
	}
	return nil
}

// newHandle returns a fresh handle in 1..2^31-1, unique among the
// handles in use, as pcscd draws them (src/sys_unix.c:108-135).
func (s *Source) newHandle() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b [4]byte
	for {
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			panic(err) // crypto/rand never fails on supported systems
		}
		h := binary.LittleEndian.Uint32(b[:]) & 0x7FFFFFFF
		if _, used := s.handles[h]; h != 0 && !used {
			s.handles[h] = struct{}{}
			return h
		}
	}
}

func (s *Source) freeHandle(h uint32) {
	s.mu.Lock()
	delete(s.handles, h)
	delete(s.contexts, h)
	s.mu.Unlock()
}

// Health is what the event loop last saw, for status and doctor.
type Health struct {
	Readers []string // the names guests see
	Err     error    // why the host's PC/SC does not answer; nil while it does
}

// Health starts the event loop if needed and returns what it sees.
func (s *Source) Health(ctx context.Context) Health {
	s.start(ctx)
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	var hl Health
	for _, sl := range s.hub.slots {
		if sl.used {
			hl.Readers = append(hl.Readers, sl.name)
		}
	}
	hl.Err = s.hub.lastErr
	return hl
}
