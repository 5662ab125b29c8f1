package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/cardshare/cardshare/internal/accept"
	"github.com/cardshare/cardshare/internal/backoff"
	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/lograte"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/relay/mux"
	"github.com/cardshare/cardshare/relay/trust"
)

// AgentConfig tunes an Agent. A nil *AgentConfig means DefaultAgentConfig().
type AgentConfig struct {
	// Logger receives lifecycle events (connected, lost, reconnecting) and,
	// at debug level, each relayed connection. Nil discards.
	Logger *slog.Logger

	// Relay configures the relay of each guest connection, which checks the
	// client's protocol version before anything reaches the host. Its
	// Logger and Stats are set by the Agent.
	Relay bridge.Config

	// Mux tunes the yamux session; nil means mux.DefaultConfig(). The
	// keepalive settings decide how soon a dead host is noticed.
	Mux *mux.Config

	// ConnectTimeout bounds one attempt to connect: dial, TLS handshake
	// and the host's hello. Zero means 10 s.
	ConnectTimeout time.Duration

	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles after each failure, with jitter. Zero means 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration

	// RefusedBackoff is the first wait after a TLS alert from the host
	// (it could not read guests.json, being rewritten?), doubling up to
	// ten times as much; only trust.Hello.Refused stops the agent. Zero
	// means 30 s.
	RefusedBackoff time.Duration

	// Client is the guest's libpcsclite when it could be read, compared
	// with the host pcscd on each connect (a mismatch is logged).
	Client *pcsc.Client

	// Dial connects to the host's address; nil means DialAddr.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// HostListener, when set, is where the agent waits for the host to
	// connect (Credentials.Listen) instead of dialing; Run closes it. The
	// TLS roles and keys are as when dialing; others learn nothing and are
	// cut off after ConnectTimeout. A new authenticated host connection
	// replaces the agent's current one.
	HostListener net.Listener
}

// DefaultAgentConfig returns the configuration used for a nil *AgentConfig.
func DefaultAgentConfig() *AgentConfig {
	return &AgentConfig{ConnectTimeout: 10 * time.Second, MinBackoff: time.Second, MaxBackoff: 30 * time.Second, RefusedBackoff: 30 * time.Second}
}

func (c *AgentConfig) withDefaults() AgentConfig {
	if c == nil {
		c = DefaultAgentConfig()
	}
	d, cc := DefaultAgentConfig(), *c
	if cc.Logger == nil {
		cc.Logger = slog.New(slog.DiscardHandler)
	}
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = d.ConnectTimeout
	}
	if cc.RefusedBackoff <= 0 {
		cc.RefusedBackoff = d.RefusedBackoff
	}
	if cc.MinBackoff <= 0 {
		cc.MinBackoff = d.MinBackoff
	}
	if cc.MaxBackoff < cc.MinBackoff {
		cc.MaxBackoff = max(d.MaxBackoff, cc.MinBackoff)
	}
	if cc.Dial == nil {
		cc.Dial = DialAddr
	}
	return cc
}

// Agent is the guest's end of relay mode. It keeps one session to the host
// up, reconnecting with capped backoff, and serves the guest socket: each
// connection a guest program makes there becomes a stream to the host pcscd.
type Agent struct {
	creds *trust.Credentials
	cfg   AgentConfig
	log   *slog.Logger
	id    *trust.Identity
	stats bridge.Stats

	mu   sync.Mutex
	sess *yamux.Session
}

// NewAgent returns an Agent that connects with creds.
func NewAgent(creds *trust.Credentials, cfg *AgentConfig) (*Agent, error) {
	c := cfg.withDefaults()
	id, err := trust.NewIdentity(creds.Key)
	if err != nil {
		return nil, err
	}
	return &Agent{creds: creds, cfg: c, log: c.Logger, id: id}, nil
}

// Stats counts the guest connections the agent relayed.
func (a *Agent) Stats() *bridge.Stats { return &a.stats }

// Connected reports whether the agent has a session with the host now.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sess != nil
}

// errNotConnected means the agent has no session with the host at the
// moment; it is reconnecting.
var errNotConnected = errors.New("relay: not connected to the host")

// Dial is the agent's DialFunc: a new stream to the host pcscd. Without a
// session it fails at once, so that Serve answers "Service not available"
// instead of letting the guest program wait for a host that is not there.
func (a *Agent) Dial(ctx context.Context) (net.Conn, error) {
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	if s == nil {
		return nil, errNotConnected
	}
	return mux.Open(s)
}

// Run serves the guest socket ln and keeps the session to the host up until
// ctx is done; then it closes ln and returns nil after every connection has
// ended. It returns early with ErrGuestRefused or trust.ErrHostKeyMismatch, which
// retrying cannot fix, or when ln fails.
func (a *Agent) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc := a.cfg.Relay
	rc.Logger = a.log
	rc.Stats = &a.stats
	served := make(chan error, 1)
	go func() { served <- bridge.Serve(ctx, rawListener{ln}, a.Dial, &rc) }()
	looped := make(chan error, 1)
	if a.cfg.HostListener != nil {
		go func() { looped <- a.awaitHost(ctx, a.cfg.HostListener) }()
	} else {
		go func() { looped <- a.keepConnected(ctx) }()
	}
	select {
	case err := <-looped:
		cancel()
		<-served
		return err
	case err := <-served:
		cancel()
		<-looped
		return err
	}
}

// keepConnected connects, waits for the session to end, and starts over,
// until ctx is done or the host refuses this guest.
func (a *Agent) keepConnected(ctx context.Context) error {
	retry := backoff.Backoff{Min: a.cfg.MinBackoff, Max: a.cfg.MaxBackoff}
	refused := backoff.Backoff{Min: a.cfg.RefusedBackoff, Max: 10 * a.cfg.RefusedBackoff}
	for {
		start := time.Now()
		sess, err := a.connect(ctx)
		if ctx.Err() != nil {
			if sess != nil {
				sess.Close()
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrGuestRefused) || errors.Is(err, trust.ErrHostKeyMismatch) {
				a.log.Error("giving up", "addr", a.creds.Host, "err", err)
				return err
			}
			wait, msg := retry.Next(), "cannot reach host; retrying"
			if errors.Is(err, errHostAlert) {
				wait, msg = refused.Next(), "host refused the connection without saying why; retrying"
			}
			a.log.Warn(msg, "addr", a.creds.Host, "err", err, "retry_in", wait.Round(time.Millisecond))
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
			continue
		}

		refused.Reset()
		a.setSession(sess)
		select {
		case <-sess.CloseChan():
		case <-ctx.Done():
		}
		a.setSession(nil)
		sess.Close()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > a.cfg.MaxBackoff {
			retry.Reset()
		}
		wait := retry.Next()
		a.log.Warn("connection to host lost; reconnecting", "addr", a.creds.Host, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

func (a *Agent) setSession(s *yamux.Session) {
	a.mu.Lock()
	a.sess = s
	a.mu.Unlock()
}

// connect dials the host, authenticates both ways and starts the session.
func (a *Agent) connect(ctx context.Context) (*yamux.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
	defer cancel()
	raw, err := a.cfg.Dial(ctx, a.creds.Host)
	if err != nil {
		return nil, err
	}
	return a.handshake(ctx, raw, a.creds.Host)
}

// handshake authenticates both ways on raw, a connection to or from the host
// at peer, reads the host's hello and starts the session. It closes raw when
// it fails, and when ctx is done before it finishes.
func (a *Agent) handshake(ctx context.Context, raw net.Conn, peer string) (*yamux.Session, error) {
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	conn := tls.Client(raw, trust.GuestTLSConfig(a.id, a.creds.HostKey, trust.ProtoRelay))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, trust.HandshakeError(peer, err)
	}
	// In TLS 1.3 the client's handshake ends before the host has checked
	// the client's key: a refusal arrives as an alert instead of the hello.
	h, err := trust.ReadHello(conn)
	if err != nil {
		raw.Close()
		switch {
		case trust.IsRemoteAlert(err):
			return nil, fmt.Errorf("%w (%s): %w", errHostAlert, peer, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("relay: no hello from %s within %v", peer, a.cfg.ConnectTimeout)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("relay: %s closed the connection during the handshake", peer)
		}
		return nil, fmt.Errorf("relay: read hello from %s: %w", peer, err)
	}
	if h.Refused != "" {
		raw.Close()
		return nil, fmt.Errorf("%w (%s: %s)", ErrGuestRefused, peer, h.Refused)
	}
	if !stop() {
		raw.Close()
		return nil, fmt.Errorf("relay: connecting to %s timed out", peer)
	}
	raw.SetDeadline(time.Time{})
	sess, err := mux.NewSession(conn, true, a.cfg.Mux, a.log)
	if err != nil {
		raw.Close()
		return nil, err
	}
	a.log.Info("connected to host", "addr", peer, "guest", h.Guest, "host_key", a.creds.HostKey.String())
	a.logCompat(h)
	return sess, nil
}

// maxAgentHandshakes caps the connections that may be in their handshake at
// once on HostListener: the host makes one at a time, so more are someone
// else's, and are closed as soon as they are accepted.
const maxAgentHandshakes = 4

// awaitHost accepts the host's connections on ln until ctx is done or the
// host refuses this guest, making each authenticated one the session.
func (a *Agent) awaitHost(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var fails lograte.Limiter
	a.log.Info("waiting for the host to connect", "listen", ln.Addr().String(), "host_key", a.creds.HostKey.String())
	refuse := func(addr net.Addr, err error) {
		if errors.Is(err, accept.ErrBusy) {
			err = errTooManyHandshakes
		}
		if n, ok := fails.Allow(time.Now()); ok && ctx.Err() == nil {
			a.log.Warn("refused connection", "addr", addr.String(), "err", err, "not_logged", n)
		}
	}
	err := accept.Loop(ctx, ln, accept.Config{Slots: maxAgentHandshakes, Refuse: refuse}, func(ctx context.Context, raw net.Conn, release func()) {
		peer := raw.RemoteAddr()
		hctx, hcancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
		sess, err := a.handshake(hctx, raw, peer.String())
		hcancel()
		release()
		if err != nil {
			if errors.Is(err, ErrGuestRefused) {
				a.log.Error("giving up", "addr", peer.String(), "err", err)
				cancel(err)
			} else {
				refuse(peer, err)
			}
			return
		}
		a.serveSession(ctx, sess, peer.String())
	})
	if cause := context.Cause(ctx); err == nil && errors.Is(cause, ErrGuestRefused) {
		return cause
	}
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// serveSession makes sess the session until it ends or ctx is done; a
// session the agent had is closed.
func (a *Agent) serveSession(ctx context.Context, sess *yamux.Session, peer string) {
	a.mu.Lock()
	old := a.sess
	a.sess = sess
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	select {
	case <-sess.CloseChan():
	case <-ctx.Done():
	}
	a.mu.Lock()
	current := a.sess == sess
	if current {
		a.sess = nil
	}
	a.mu.Unlock()
	sess.Close()
	if current && ctx.Err() == nil {
		a.log.Warn("connection to host lost; waiting for the host to reconnect", "addr", peer)
	}
}

// logCompat compares the guest's libpcsclite with the host pcscd.
func (a *Agent) logCompat(h trust.Hello) {
	if a.cfg.Client == nil || h.Protocol == [2]uint32{} {
		return
	}
	d := pcsc.Daemon{Version: pcsc.Version{Major: h.Protocol[0], Minor: h.Protocol[1]}, Lenient: h.Lenient}
	bridge.LogCompat(a.log, *a.cfg.Client, d, "the host")
}
