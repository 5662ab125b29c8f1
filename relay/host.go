package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cardshare/cardshare/internal/accept"
	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/lograte"
	"github.com/cardshare/cardshare/relay/mux"
	"github.com/cardshare/cardshare/relay/trust"
)

// HostConfig tunes a Host. A nil *HostConfig means the defaults.
type HostConfig struct {
	// Logger receives lifecycle events (guest attached, detached, paired,
	// revoked), refused connections and, at debug level, each relayed
	// connection. Nil discards.
	Logger *slog.Logger

	// Dial reaches the host's PC/SC: a hostpcsc.Source's Dial. Nil means
	// the pcscd socket at pcsc.DefaultSocket (hostpcsc.Socket{}).
	Dial bridge.DialFunc

	// Relay configures the relay of each stream to pcscd. Its Logger,
	// Stats and Policy (trust.GuestRecord.Policy) are set per guest;
	// Relay.Daemon is sent to each guest's agent to compare with its
	// libpcsclite. Relay.Limiter caps each guest's connections and all
	// together; nil means connlimit's defaults for this Host.
	Relay bridge.Config

	// Mux tunes the yamux sessions; nil means mux.DefaultConfig().
	Mux *mux.Config

	// HandshakeTimeout bounds a new connection's TLS handshake and, for a
	// pairing, the exchange that follows. A peer that stalls is cut off then.
	// Zero means 10 s.
	HandshakeTimeout time.Duration

	// FirstByteTimeout bounds the wait for a new connection's first TLS
	// bytes (an agent sends them at once). Zero means 2.5 s.
	FirstByteTimeout time.Duration

	// MaxHandshakes caps the connections in their handshake at once; when
	// all are taken the oldest (silent ones first) is closed for the newest,
	// so that stalling peers cannot keep a paired guest out. Zero means 32.
	MaxHandshakes int

	// PollInterval is how often the host looks for changes of the guest list
	// that `relay pair` and `relay revoke` make. A revoked guest is cut off
	// within this time; handshakes always see the current list. Zero means
	// 250 ms.
	PollInterval time.Duration

	// DialGuest connects to a guest that the host dials (trust.GuestRecord.Dial);
	// nil means DialAddr.
	DialGuest func(ctx context.Context, addr string) (net.Conn, error)

	// MinBackoff and MaxBackoff bound the wait between attempts to reach a
	// guest that the host dials, which doubles after each failure, with
	// jitter. For a pending pairing the wait stays at most 2 s, so that a
	// guest that just started `relay join --listen` is paired at once. Zero
	// means 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// defaultHostConfig returns the configuration used for a nil *HostConfig.
func defaultHostConfig() *HostConfig {
	return &HostConfig{HandshakeTimeout: 10 * time.Second, FirstByteTimeout: 2500 * time.Millisecond, MaxHandshakes: 32, PollInterval: 250 * time.Millisecond, MinBackoff: time.Second, MaxBackoff: 30 * time.Second}
}

func (c *HostConfig) withDefaults() HostConfig {
	if c == nil {
		c = defaultHostConfig()
	}
	d, cc := defaultHostConfig(), *c
	if cc.Logger == nil {
		cc.Logger = slog.New(slog.DiscardHandler)
	}
	if cc.Dial == nil {
		cc.Dial = hostpcsc.Socket{}.Dial
	}
	if cc.HandshakeTimeout <= 0 {
		cc.HandshakeTimeout = d.HandshakeTimeout
	}
	if cc.MaxHandshakes <= 0 {
		cc.MaxHandshakes = d.MaxHandshakes
	}
	if cc.FirstByteTimeout <= 0 {
		cc.FirstByteTimeout = min(d.FirstByteTimeout, cc.HandshakeTimeout)
	}
	if cc.PollInterval <= 0 {
		cc.PollInterval = d.PollInterval
	}
	if cc.DialGuest == nil {
		cc.DialGuest = DialAddr
	}
	if cc.MinBackoff <= 0 {
		cc.MinBackoff = d.MinBackoff
	}
	if cc.MaxBackoff < cc.MinBackoff {
		cc.MaxBackoff = max(d.MaxBackoff, cc.MinBackoff)
	}
	return cc
}

// Host is the host's end of relay mode. It authenticates paired guests by
// their pinned keys, relays each yamux stream they open to the host pcscd,
// and completes pairings. Guests paired with an address (PairOptions.Dial)
// are dialed and redialed with backoff, the TLS and yamux roles unchanged.
// One Host serves any number of guests, each with its own counters.
type Host struct {
	state *trust.HostState
	cfg   HostConfig
	log   *slog.Logger
	tls   *tls.Config
	fails lograte.Limiter

	reload chan struct{} // Reload's request to watch

	mu       sync.Mutex
	list     *trust.GuestList // the guest list as last read
	listInfo os.FileInfo      // the file it was read from
	guests   map[string]*hostGuest
}

// hostGuest is a guest the host has seen since it started.
type hostGuest struct {
	stats    bridge.Stats
	key      trust.Fingerprint
	sess     *yamux.Session // the current session, or nil
	addr     string
	since    time.Time
	sessions uint64
	reason   string            // why the host closed sess, if it did
	served   trust.GuestRecord // the record sess was attached under: its policy

	// For a guest that the host dials: where, what the dialing does now
	// (connecting, backing-off), until when it waits, and why the last
	// attempt or session ended.
	dial    string
	dialing string
	retryAt time.Time
	lastErr string
}

// NewHost returns a Host for the guests paired in state.
func NewHost(state *trust.HostState, cfg *HostConfig) *Host {
	c := cfg.withDefaults()
	if c.Relay.Limiter == nil {
		c.Relay.Limiter, _ = connlimit.New(&connlimit.Config{Logger: c.Logger}) // the defaults are valid
	}
	h := &Host{state: state, cfg: c, log: c.Logger, guests: make(map[string]*hostGuest), reload: make(chan struct{}, 1)}
	h.tls = trust.HostTLSConfig(state.Identity(), h.verify)
	return h
}

// errNotPaired is the host's reason to refuse a key that its guest list
// does not accept; the peer is told so (trust.Hello.Refused).
var errNotPaired = errors.New("relay: key is not paired with this host, or was revoked")

// verify decides whether a client key may proceed with proto. It runs inside
// the handshake, before the client has proved that it holds the key.
func (h *Host) verify(proto string, fp trust.Fingerprint) error {
	switch proto {
	case trust.ProtoPair:
		return nil // the secret decides, after the handshake
	case trust.ProtoRelay:
		// A key the readable list refuses passes, to be told so after the
		// handshake (attach); an unreadable list fails it (an alert).
		if _, refusal, ok := h.lookup(fp); ok || refusal != "" {
			return nil
		}
		return fmt.Errorf("%w: %s", errListUnreadable, fp)
	}
	return errors.New("relay: client offered no cardshare protocol")
}

// errListUnreadable refuses every key while the guest list cannot be read
// (a bad_certificate alert, which the agent retries).
var errListUnreadable = errors.New("relay: guest list cannot be read; refusing for now")

// lookup looks fp up in the current guest list. It returns the guest's
// record when it may connect; else why not, in words for the guest
// ("revoked", "not paired"), or "" when the list cannot be read.
func (h *Host) lookup(fp trust.Fingerprint) (rec trust.GuestRecord, refusal string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.refreshLocked(); err != nil {
		return trust.GuestRecord{}, "", false // watch logs it
	}
	g, found := h.list.ByKey(fp)
	switch {
	case !found:
		return trust.GuestRecord{}, "not paired", false
	case !g.Active():
		return trust.GuestRecord{}, "revoked", false
	}
	return g, "", true
}

// refreshLocked re-reads the guest list if its file changed. While the file
// cannot be read, h.list is nil and every guest is refused.
func (h *Host) refreshLocked() error {
	if h.list != nil && !h.state.Changed(h.listInfo) {
		return nil
	}
	l, fi, err := h.state.LoadGuests()
	if err != nil {
		h.list, h.listInfo = nil, nil
		return err
	}
	h.list, h.listInfo = l, fi
	return nil
}

// Serve accepts guest connections on ln and dials the guests paired with an
// address, until ctx is done or ln fails, and returns after every connection
// it started has ended. Serve closes ln when ctx is done. A nil ln only
// dials.
func (h *Host) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() { h.watch(ctx) })
	wg.Go(func() { h.dialGuests(ctx) })
	if ln == nil {
		<-ctx.Done()
		return nil
	}
	refuse := func(addr net.Addr, err error) {
		if errors.Is(err, accept.ErrBusy) {
			err = errTooManyHandshakes
		}
		h.refused(addr, err)
	}
	ac := accept.Config{Slots: h.cfg.MaxHandshakes, Evict: true, FirstByte: h.cfg.FirstByteTimeout, Refuse: refuse}
	err := accept.Loop(ctx, ln, ac, func(ctx context.Context, c net.Conn, release func()) {
		h.handle(ctx, c, release, nil)
	})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// handle authenticates one connection and serves it. It calls done when the
// handshake is over, at the latest when it returns. want is the guest (or
// pairing) that the host dialed, nil for a connection it accepted; the peer
// must be that guest. handle returns why the handshake failed, and nil once
// a pairing or session it started has ended.
func (h *Host) handle(ctx context.Context, raw net.Conn, done func(), want *dialTarget) error {
	defer done()
	addr := raw.RemoteAddr()
	hctx, cancel := context.WithTimeout(ctx, h.cfg.HandshakeTimeout)
	defer cancel()
	// HandshakeContext honours hctx; the deadline also bounds a pairing.
	stop := context.AfterFunc(hctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()

	conn := tls.Server(raw, h.tls)
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		if ctx.Err() == nil && want == nil {
			h.refused(addr, err)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	cs := conn.ConnectionState()
	fp, err := trust.PeerFingerprint(cs)
	if err != nil {
		raw.Close()
		return err
	}
	if err := want.check(cs.NegotiatedProtocol, fp); err != nil {
		raw.Close()
		return err
	}
	if cs.NegotiatedProtocol == trust.ProtoPair {
		err := h.pair(conn, addr, fp)
		conn.Close()
		return err
	}
	if !stop() {
		raw.Close()
		err := errors.New("handshake timed out")
		if want == nil {
			h.refused(addr, err)
		}
		return err
	}
	raw.SetDeadline(time.Time{})
	done()
	h.attach(ctx, conn, addr, fp)
	return nil
}

// pair completes a pairing: it reads the token's secret and, if a pending
// pairing has it, pins the guest's key. It returns why it refused.
func (h *Host) pair(conn *tls.Conn, addr net.Addr, fp trust.Fingerprint) error {
	var secret [trust.SecretSize]byte
	if _, err := io.ReadFull(conn, secret[:]); err != nil {
		err = fmt.Errorf("pairing: read secret: %w", err)
		h.refused(addr, err)
		return err
	}
	rec, err := h.state.Redeem(secret, fp, time.Now())
	if err != nil {
		h.log.Warn("pairing refused", "addr", addr.String(), "err", err)
		return err
	}
	h.log.Info("guest paired", "guest", rec.Name, "key", rec.Key.String(), "addr", addr.String())
	if err := trust.WriteHello(conn, trust.Hello{Guest: rec.Name}); err != nil {
		h.log.Warn("pairing: guest left before the answer; revoke it and pair again", "guest", rec.Name, "err", err)
	}
	return nil
}

// attach serves a paired guest's session until it ends.
func (h *Host) attach(ctx context.Context, conn *tls.Conn, addr net.Addr, fp trust.Fingerprint) {
	defer conn.Close()
	rec, refusal, ok := h.lookup(fp)
	if !ok {
		if refusal != "" {
			// The host's explicit word, on which the agent stops.
			conn.SetWriteDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
			trust.WriteHello(conn, trust.Hello{Refused: refusal})
			h.refused(addr, fmt.Errorf("%w (%s): %s", errNotPaired, refusal, fp))
			return
		}
		h.refused(addr, fmt.Errorf("%w: %s", errListUnreadable, fp))
		return
	}
	log := h.log.With("guest", rec.Name)
	d := h.cfg.Relay.Daemon
	conn.SetWriteDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	err := trust.WriteHello(conn, trust.Hello{Guest: rec.Name, Protocol: [2]uint32{d.Version.Major, d.Version.Minor}, Lenient: d.Lenient})
	conn.SetWriteDeadline(time.Time{})
	if err != nil {
		log.Warn("guest left during the handshake", "addr", addr.String(), "err", err)
		return
	}
	sess, err := mux.NewSession(conn, false, h.cfg.Mux, log)
	if err != nil {
		log.Error("cannot start session", "err", err)
		return
	}
	g, rec, err := h.register(rec, sess, addr)
	if err != nil {
		sess.Close()
		h.refused(addr, err)
		return
	}
	rc := h.cfg.Relay
	if p := rec.Policy(); p != nil {
		rc.Policy = p
		log.Info("guest attached", "addr", addr.String(), "readers", p.Readers, "deny_control", p.DenyControl)
	} else {
		log.Info("guest attached", "addr", addr.String())
	}

	// Serve closes the session when ctx is done; the session ends Serve
	// when it closes for any other reason.
	rc.Logger = log
	rc.Stats = &g.stats
	rc.Guest = rec.Name
	err = bridge.Serve(ctx, mux.Listener{Session: sess}, h.cfg.Dial, &rc)
	sess.Close()
	reason := h.unregister(rec.Name, sess)
	switch {
	case reason != "":
	case errors.Is(context.Cause(ctx), errNotWanted):
		reason = errNotWanted.Error()
	case ctx.Err() != nil:
		reason = "host stopping"
	case err != nil:
		// The session's end, as yamux words it, is the reason.
		reason = err.Error()
		if ae := (*accept.Error)(nil); errors.As(err, &ae) {
			reason = ae.Err.Error()
		}
	}
	h.mu.Lock()
	g.lastErr = reason
	h.mu.Unlock()
	log.Info("guest detached", "reason", reason, "connections", g.stats.Total.Load(),
		"up_bytes", g.stats.Up.Load(), "down_bytes", g.stats.Down.Load())
}

// register makes sess the guest's current session, after checking once more
// that the guest is active: a revocation may have come since the handshake.
// A session the guest had already is closed; the new one proved the same
// key, so it is the guest reconnecting before the host noticed it gone.
func (h *Host) register(rec trust.GuestRecord, sess *yamux.Session, addr net.Addr) (*hostGuest, trust.GuestRecord, error) {
	h.mu.Lock()
	if err := h.refreshLocked(); err != nil {
		h.mu.Unlock()
		return nil, rec, err
	}
	cur, ok := h.list.Current(rec.Key, rec.Name)
	if !ok {
		h.mu.Unlock()
		return nil, rec, fmt.Errorf("%w: %s", errNotPaired, rec.Key)
	}
	g := h.guests[rec.Name]
	if g == nil || !g.key.Equal(rec.Key) {
		g = &hostGuest{key: rec.Key, dial: rec.Dial}
		h.guests[rec.Name] = g
	}
	old := g.sess
	g.sess, g.addr, g.since, g.reason, g.served = sess, addr.String(), time.Now(), "", cur
	g.sessions++
	h.mu.Unlock()
	if old != nil {
		old.Close() // its attach logs "replaced by a new connection"
	}
	return g, cur, nil
}

// unregister forgets sess and returns why the host closed it, if it did.
func (h *Host) unregister(name string, sess *yamux.Session) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.guests[name]
	if g == nil || g.sess != sess {
		return "replaced by a new connection"
	}
	g.sess = nil
	r := g.reason
	g.reason = ""
	return r
}

// Reload makes a running Serve read the guest list again now, whether or
// not its modification time changed (`relay serve` on SIGHUP): revocations
// and policy changes apply at once, and it logs that it did.
func (h *Host) Reload() {
	select {
	case h.reload <- struct{}{}:
	default: // one is pending
	}
}

// watch cuts off guests whose key is no longer active, as soon as the guest
// list says so. It checks every session on every tick: a handshake may have
// read the new list first.
func (h *Host) watch(ctx context.Context) {
	t := time.NewTicker(h.cfg.PollInterval)
	defer t.Stop()
	broken := false
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.reload:
			forced = true
		}
		h.mu.Lock()
		if forced {
			h.list = nil // read it even when its mtime did not change
		}
		err := h.refreshLocked()
		if forced && err == nil {
			h.log.Info("guest list reloaded", "guests", len(h.list.Guests))
		}
		if err != nil {
			// New connections are refused meanwhile but
			// sessions stay up: an unreadable file is no revocation.
			h.mu.Unlock()
			if !broken {
				h.log.Error("cannot read the guest list; refusing new connections until it is fixed", "err", err)
			}
			broken = true
			continue
		}
		if broken {
			h.log.Info("guest list readable again")
			broken = false
		}
		var cut []*yamux.Session
		for name, g := range h.guests {
			if g.sess == nil || g.reason != "" {
				continue
			}
			switch cur, ok := h.list.Current(g.key, name); {
			case !ok:
				g.reason = "revoked"
			case !cur.SamePolicy(g.served):
				// The guest reconnects at once, under the new policy.
				g.reason = "reader policy changed"
			default:
				continue
			}
			cut = append(cut, g.sess)
		}
		h.mu.Unlock()
		// Closing a session may wait for its connection (TLS close_notify);
		// handshakes must not wait for that.
		for _, s := range cut {
			s.Close()
		}
	}
}
