package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/cardshare/cardshare/internal/accept"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// DialFunc opens a connection that speaks pcsc-lite's client protocol to
// the host: the pcscd socket (a hostpcsc.Source's Dial), a yamux stream, or
// anything else that reaches it.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Config tunes Serve. A nil *Config means DefaultConfig().
type Config struct {
	// Logger receives lifecycle and per-connection events. Payload bytes
	// are never logged, at any level. Nil discards.
	Logger *slog.Logger

	// Daemon is the host pcscd as probed at start. When it is known, a
	// guest whose protocol version it would reject (a 4.4 guest and a
	// 4.5-only daemon, or the reverse, or a 4.6 guest and an older
	// daemon) is served by translation instead: the relay answers the
	// guest's CMD_VERSION as a daemon of the guest's version would and
	// speaks the daemon's version upstream. Its Readers sizes the host's
	// reader arrays. It also words the error logged when the daemon
	// rejects a guest. The zero value means unknown: versions are then
	// relayed as they are, and the daemon's reply words the error.
	Daemon pcsc.Daemon

	// OpeningTimeout bounds the wait for a new connection's first message
	// and for each CMD_VERSION exchange. libpcsclite sends CMD_VERSION right
	// after connecting, so a peer that stays silent is not a pcsc-lite
	// client and must not hold a slot. Zero means 10 s.
	OpeningTimeout time.Duration

	// MaxConns caps the connections served at once; more are refused at
	// accept. pcscd itself serves at most 200 (PCSC_MAX_CONTEXT_THREADS).
	// Zero means 200.
	MaxConns int

	// Limiter, when set, caps the connections Guest holds open on the
	// host, and the whole process's (connlimit): one guest that opens
	// connections in a loop must not take pcscd's ~200 client slots from
	// the host's own programs and the other guests. A connection over a
	// cap is answered as a pcscd that cannot serve it (SCARD_E_NO_SERVICE)
	// and closed; the Limiter logs refusals once per burst. Share one
	// Limiter between every Serve of the process. Nil caps nothing but
	// MaxConns.
	Limiter *connlimit.Limiter

	// Guest names the guest this Serve serves, for Limiter.
	Guest string

	// Stats, when set, is updated as connections come and go.
	Stats *Stats

	// Policy limits what the guest may see and do with the host's
	// readers (see pcsc.Policy). With a policy, every connection goes
	// through the protocol-aware stage (proxy.go) instead of the byte
	// relay. Nil means no policy.
	Policy *pcsc.Policy

	// Audit logs one line per PC/SC call of the guest at Info level:
	// command, reader, return code, duration and byte sizes, never
	// payload bytes. Like a policy, it makes every connection go through
	// the protocol-aware stage. False logs none.
	Audit bool

	// Local, when set, is the host side that dial reaches, serving in
	// this process (the native backend, internal/nativepcsc): a
	// connection that needs no protocol stage is handed to it, guest
	// connection and all, once its opening message is read and checked,
	// instead of being piped to a connection from dial. The others
	// (policy, audit log, translation) still dial. Nil dials for every
	// connection.
	Local Local

	// GuestSlots is PCSCLITE_MAX_READERS_CONTEXTS of the guest's
	// libpcsclite: how many reader records it reads from the host. It is
	// 16 upstream and 48 in Fedora's builds, without a change of protocol
	// version, and the guest cannot be asked. When it differs from the
	// host's (Daemon.Readers), the proxy pads or truncates the reader
	// arrays of old-API clients. Zero means 16.
	GuestSlots int

	// shared is what the proxied connections of this Serve share: the
	// policy, the contexts issued to the guest, its reader events.
	shared *proxy.Guest
}

// Validate checks the reader policy and GuestSlots.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	if err := c.Policy.Validate(); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if c.GuestSlots < 0 || c.GuestSlots > pcsc.MaxSlots {
		return fmt.Errorf("bridge: GuestSlots %d is not between 1 and %d", c.GuestSlots, pcsc.MaxSlots)
	}
	return nil
}

// DefaultConfig returns the configuration Serve uses for a nil *Config.
func DefaultConfig() *Config {
	return &Config{OpeningTimeout: 10 * time.Second, MaxConns: 200}
}

func (c *Config) withDefaults() Config {
	if c == nil {
		c = DefaultConfig()
	}
	cc := *c
	if cc.Logger == nil {
		cc.Logger = slog.New(slog.DiscardHandler)
	}
	if cc.OpeningTimeout <= 0 {
		cc.OpeningTimeout = 10 * time.Second
	}
	if cc.MaxConns <= 0 {
		cc.MaxConns = 200
	}
	if cc.Stats == nil {
		cc.Stats = new(Stats)
	}
	// A policy or an audit log needs every connection proxied, which
	// also lets SCARD_CANCEL be checked; an empty policy says so.
	p := cc.Policy
	if p == nil && cc.Audit {
		p = new(pcsc.Policy)
	}
	cc.shared = proxy.NewGuest(p)
	return cc
}

// Stats counts a Serve's connections and bytes. Fields are safe to read at
// any time.
type Stats struct {
	Open   atomic.Int64  // connections being relayed now
	Total  atomic.Uint64 // connections accepted
	Failed atomic.Uint64 // connections closed before relaying: bad opening, daemon unreachable
	Counts               // bytes relayed

	// client is the protocol version that the last opened connection's
	// library proposed in CMD_VERSION (major<<32 | minor), 0 if none yet:
	// in relay mode only the host's end sees the guest's libpcsclite.
	client atomic.Uint64
}

// Client returns the protocol version the guest's libpcsclite proposed in
// the last connection that opened, and false before any did.
func (s *Stats) Client() (pcsc.Version, bool) {
	v := s.client.Load()
	return pcsc.Version{Major: uint32(v >> 32), Minor: uint32(v)}, v != 0
}

// Serve accepts connections on ln and relays each to a connection from dial,
// after checking that it opens as a pcsc-lite client does. It returns when
// ctx is done or ln fails, after every connection it started has closed.
// Serve does not close ln unless ctx is done.
//
// For each connection Serve reads the opening message (CMD_VERSION, or
// SCARD_CANCEL on the temporary socket of SCardCancel) before it dials, so a
// peer that is not a pcsc-lite client never reaches pcscd. It then relays the
// CMD_VERSION exchanges itself, to log a clear error when pcscd rejects the
// guest's protocol version, or translates them when Config.Daemon says it
// would. It pipes the rest of the connection unchanged, unless the versions
// or the reader array sizes of the two ends differ, or a policy or an audit
// log applies: then the protocol-aware stage of proxy.go relays it message
// by message.
func Serve(ctx context.Context, ln net.Listener, dial DialFunc, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c := cfg.withDefaults()
	refuse := func(_ net.Addr, err error) {
		if errors.Is(err, accept.ErrBusy) {
			c.Stats.Total.Add(1)
			c.Stats.Failed.Add(1)
			c.Logger.Warn("refusing guest connection: too many open", "max", c.MaxConns)
			return
		}
		c.Logger.Warn("cannot accept guest connections; retrying", "err", err)
	}
	err := accept.Loop(ctx, ln, accept.Config{Slots: c.MaxConns, Refuse: refuse},
		func(ctx context.Context, conn net.Conn, _ func()) {
			serveConn(ctx, conn, dial, &c)
		})
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return nil
}

func serveConn(ctx context.Context, guest net.Conn, dial DialFunc, c *Config) {
	id := c.Stats.Total.Add(1)
	log := c.Logger.With("conn", id)
	start := time.Now()
	host, hs, err := open(ctx, guest, dial, c, log)
	if err != nil {
		c.Stats.Failed.Add(1)
		guest.Close()
		if errors.Is(err, errOverCap) {
			// The Limiter logs refusals, once per burst.
			log.Debug("guest connection refused", "err", err)
			return
		}
		if ctx.Err() == nil {
			logFailure(log, err)
		}
		return
	}
	defer hs.release()
	if !hs.cancel {
		c.Stats.client.Store(uint64(hs.client.Major)<<32 | uint64(hs.client.Minor))
	}
	c.Stats.Open.Add(1)
	defer c.Stats.Open.Add(-1)
	var counts Counts
	if hs.local {
		serveLocal(ctx, guest, hs, c, log, &counts)
	} else if d, ok := c.stage(hs); ok {
		err = runProxy(ctx, guest, host, d, hs.prefix, c, log, &counts)
	} else if f, ok := c.framing(hs); ok {
		err = framedPipe(ctx, guest, host, &counts, f)
	} else {
		err = Pipe(ctx, guest, host, &counts)
	}
	up, down := counts.Up.Load(), counts.Down.Load()
	c.Stats.Up.Add(up)
	c.Stats.Down.Add(down)
	if err != nil {
		log.Warn("guest connection failed", "err", err, "up_bytes", up, "down_bytes", down)
		return
	}
	log.Debug("guest connection closed", "up_bytes", up, "down_bytes", down, "duration", time.Since(start).Round(time.Millisecond))
}

func logFailure(log *slog.Logger, err error) {
	var m *pcsc.Mismatch
	if errors.Is(err, ErrHostRefused) {
		log.Warn("host refused the guest connection", "err", err, "hint", HostRefusedHint)
		return
	}
	if errors.As(err, &m) {
		log.Error("guest rejected by host pcscd", "err", err, "hint", m.Hint(),
			"guest_protocol", m.Client.String(), "host_protocol", m.Daemon.Version.String())
		return
	}
	log.Warn("closing guest connection", "err", err)
}
