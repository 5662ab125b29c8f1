package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/backoff"
	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/neterr"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// Guest is a guest to expose the host pcscd to.
type Guest struct {
	// Name is how the user named the guest; it labels logs and events.
	Name string
	// Target is where to connect.
	Target sshdial.Target
	// Socket is the guest socket path. Empty means a default that the
	// guest chooses in a directory only the login user can enter.
	Socket string
}

// Config tunes Expose. A nil *Config means DefaultConfig().
type Config struct {
	// Host is where the host's PC/SC comes from (hostpcsc.New). Nil means
	// the pcscd socket HostSocket.
	Host hostpcsc.Source

	// HostSocket is the host pcscd socket when Host is nil. Empty means
	// pcsc.DefaultSocket.
	HostSocket string

	// Daemon is the host pcscd as probed at start; it words errors.
	Daemon pcsc.Daemon

	// Dial holds the SSH options: accept-new, passphrase prompt, logger.
	Dial sshdial.DialOptions

	// KeepaliveInterval is how often a keepalive@openssh.com request
	// checks that the guest is still there. x/crypto/ssh has no keepalive
	// of its own, so without it a guest that vanished (VM paused, network
	// gone) would hang its forward forever. Zero means 5 s.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a keepalive may wait for its reply
	// before the connection counts as dead. Interval plus timeout is the
	// worst-case detection time. Zero means 10 s.
	KeepaliveTimeout time.Duration

	// MinBackoff and MaxBackoff bound the wait between reconnects, which
	// doubles after each failed attempt. Zero means 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration

	// ConnectBackoff caps the wait after an attempt that did not reach the
	// guest's sshd at all (refused, timed out, no SSH banner): the guest is
	// booting or down, and trying again costs one TCP connection, so the
	// forward comes back within about this long of the guest's sshd instead
	// of up to MaxBackoff later. Zero means 2 s.
	ConnectBackoff time.Duration

	// Wait bounds how long a guest that has not been up yet is retried
	// (it may be booting): after it, Run returns the last error. Zero
	// means forever (the service's choice; a command line tool should give
	// up). Once the forward has been up, every loss is retried forever.
	Wait time.Duration

	// GiveUp reports the errors of a first connection that retrying will
	// not fix, which stop the Forwarder at once. Nil means [Permanent].
	GiveUp func(error) bool

	// StaleProbe is how long a listener found at the guest socket path may
	// take to answer before it counts as silent. A silent listener on the
	// socket of this Forwarder's own lost connection is that dead forward
	// and is removed; anyone else's is left alone, and the Forwarder
	// retries (guestsock.ErrSilent). Zero means 2 s.
	StaleProbe time.Duration

	// SocketCheck is how often a guest whose forward is up is asked
	// whether the guest socket is still there. Removing it (rm, a /tmp
	// cleaner) leaves sshd listening on a path no client can reach, and
	// nothing else would notice; a check that finds it gone reconnects,
	// which creates it again. Each check runs `[ -S path ]` in the guest.
	// Zero means 30 s.
	SocketCheck time.Duration

	// Starts bounds how many guests set up their forward at once (see
	// StartGate); guests that share one are held to it together. Nil
	// means, in Expose, a NewStartGate(0, 0) shared by its guests, and
	// for a Forwarder made by NewForwarder no bound.
	Starts *StartGate

	// Relay configures the relay of each guest connection; its Logger,
	// Daemon, Stats and Guest are set per guest. A nil Relay.Limiter
	// means one with connlimit's defaults, shared by the guests of one
	// Expose (a Forwarder made by NewForwarder gets its own).
	Relay bridge.Config

	// Logger receives lifecycle events. Nil discards.
	Logger *slog.Logger

	// OnEvent, when set, is called on every change of a guest's state.
	// It must not block.
	OnEvent func(Event)
}

// DefaultConfig returns the configuration Expose uses for a nil *Config.
func DefaultConfig() *Config {
	return &Config{
		HostSocket:        pcsc.DefaultSocket,
		KeepaliveInterval: 5 * time.Second,
		KeepaliveTimeout:  10 * time.Second,
		MinBackoff:        time.Second,
		MaxBackoff:        30 * time.Second,
		ConnectBackoff:    2 * time.Second,
		StaleProbe:        2 * time.Second,
		SocketCheck:       30 * time.Second,
	}
}

func (c *Config) withDefaults() Config {
	if c == nil {
		c = DefaultConfig()
	}
	d, cc := DefaultConfig(), *c
	if cc.HostSocket == "" {
		cc.HostSocket = d.HostSocket
	}
	if cc.Host == nil {
		cc.Host = hostpcsc.Socket{Path: cc.HostSocket}
	}
	if cc.KeepaliveInterval <= 0 {
		cc.KeepaliveInterval = d.KeepaliveInterval
	}
	if cc.KeepaliveTimeout <= 0 {
		cc.KeepaliveTimeout = d.KeepaliveTimeout
	}
	if cc.MinBackoff <= 0 {
		cc.MinBackoff = d.MinBackoff
	}
	if cc.MaxBackoff < cc.MinBackoff {
		cc.MaxBackoff = max(d.MaxBackoff, cc.MinBackoff)
	}
	if cc.ConnectBackoff <= 0 {
		cc.ConnectBackoff = d.ConnectBackoff
	}
	if cc.GiveUp == nil {
		cc.GiveUp = Permanent
	}
	if cc.StaleProbe <= 0 {
		cc.StaleProbe = d.StaleProbe
	}
	if cc.SocketCheck <= 0 {
		cc.SocketCheck = d.SocketCheck
	}
	if cc.Logger == nil {
		cc.Logger = slog.New(slog.DiscardHandler)
	}
	if cc.Dial.Logger == nil {
		cc.Dial.Logger = cc.Logger
	}
	return cc
}

// State is where a guest's forward stands.
type State string

const (
	StateConnecting State = "connecting"
	StateUp         State = "up"
	StateBackoff    State = "backing-off"
	StateFailed     State = "failed"
	StateStopped    State = "stopped"
)

// Event reports a guest's new state.
type Event struct {
	Guest string
	State State
	// Socket is the guest socket path (StateUp).
	Socket string
	// GuestClient is the guest's libpcsclite when it could be read (StateUp).
	GuestClient *pcsc.Client
	// Err is why the forward went down or failed (StateBackoff, StateFailed).
	Err error
	// Retry is when the next attempt starts (StateBackoff).
	Retry time.Time
}

// Expose forwards the host pcscd into every guest and keeps the forwards
// up until ctx is done. Each guest runs on its own: one that fails or is
// unreachable never affects another. A guest whose first attempt fails for a
// reason that retrying cannot fix (unknown host key, refused authentication,
// forwarding not allowed) stops with that error; after it has been up once,
// every loss is retried with capped exponential backoff.
//
// Expose returns nil when ctx ends, or the errors of the guests that stopped
// when none is left running.
func Expose(ctx context.Context, guests []Guest, cfg *Config) error {
	c := cfg.withDefaults()
	if c.Relay.Limiter == nil {
		l, err := connlimit.New(&connlimit.Config{Logger: c.Logger})
		if err != nil {
			return err
		}
		c.Relay.Limiter = l
	}
	if c.Starts == nil {
		c.Starts = NewStartGate(0, 0)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := NewForwarder(g, &c).Run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, &GuestError{Guest: g.Name, Err: err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// GuestError is the error that stopped one guest.
type GuestError struct {
	Guest string
	Err   error
}

func (e *GuestError) Error() string {
	return e.Guest + ": " + e.Err.Error()
}
func (e *GuestError) Unwrap() error { return e.Err }

// Forwarder keeps the forward of one guest up. Expose runs one per guest;
// a long-running service starts and stops them one by one.
type Forwarder struct {
	guest Guest
	cfg   *Config
	log   *slog.Logger
	stats bridge.Stats

	// held is the guest socket of the last forward that came up, which
	// a lost connection may have left held by its silent listener; Run's
	// goroutine alone uses it.
	held string

	mu     sync.Mutex
	status Status
}

// NewForwarder returns a Forwarder for g; Run starts it.
func NewForwarder(g Guest, cfg *Config) *Forwarder {
	c := cfg.withDefaults()
	if c.Relay.Limiter == nil {
		c.Relay.Limiter, _ = connlimit.New(&connlimit.Config{Logger: c.Logger}) // the defaults are valid
	}
	return &Forwarder{guest: g, cfg: &c, log: c.Logger.With("guest", g.Name),
		status: Status{Guest: g.Name, State: StateConnecting, Since: time.Now()}}
}

// Status is a snapshot of a guest's forward.
type Status struct {
	Guest string
	State State
	// Since is when State began; for StateUp, when the forward came up.
	Since time.Time
	// Retry is when the next attempt starts (StateBackoff).
	Retry time.Time
	// Socket is the guest socket path of the current or last forward.
	Socket string
	// GuestClient is the guest's libpcsclite when it could be read.
	GuestClient *pcsc.Client
	// LastError is why the forward last went down, "" if it never did.
	LastError string
	// Open, Connections, BytesUp and BytesDown count the relayed guest
	// connections since the Forwarder started.
	Open                int64
	Connections, Failed uint64
	BytesUp, BytesDown  uint64
}

// Status returns the forward's current state and counters.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	s := f.status
	f.mu.Unlock()
	s.Open = f.stats.Open.Load()
	s.Connections = f.stats.Total.Load()
	s.Failed = f.stats.Failed.Load()
	s.BytesUp = f.stats.Up.Load()
	s.BytesDown = f.stats.Down.Load()
	return s
}

func (f *Forwarder) event(e Event) {
	e.Guest = f.guest.Name
	f.mu.Lock()
	f.status.State, f.status.Since, f.status.Retry = e.State, time.Now(), e.Retry
	if e.Socket != "" {
		f.status.Socket = e.Socket
	}
	if e.GuestClient != nil {
		f.status.GuestClient = e.GuestClient
	}
	if e.Err != nil {
		f.status.LastError = e.Err.Error()
	}
	f.mu.Unlock()
	if f.cfg.OnEvent != nil {
		f.cfg.OnEvent(e)
	}
}

// Run keeps the forward up until ctx is done, and then removes the guest
// socket. It returns nil then, or the error of a first attempt that
// retrying cannot fix, or the last error when the guest was not up within
// Config.Wait (see Expose).
func (f *Forwarder) Run(ctx context.Context) error {
	if s := f.guest.Socket; s != "" && !path.IsAbs(s) {
		err := fmt.Errorf("%w: %q", ErrRelativeSocket, s)
		f.event(Event{State: StateFailed, Err: err})
		return err
	}
	backoff := backoff.Backoff{Min: f.cfg.MinBackoff, Max: f.cfg.MaxBackoff}
	start := time.Now()
	everUp := false
	for {
		f.event(Event{State: StateConnecting})
		up, err := f.once(ctx)
		if ctx.Err() != nil {
			f.event(Event{State: StateStopped})
			return nil
		}
		if up {
			everUp = true
			backoff.Reset()
		}
		if !everUp && f.cfg.GiveUp(err) {
			f.log.Error("giving up on guest", "err", err)
			f.event(Event{State: StateFailed, Err: err})
			return err
		}
		wait := backoff.Next()
		if errors.Is(err, sshdial.ErrConnect) {
			wait = min(wait, f.cfg.ConnectBackoff)
		}
		if !everUp && f.cfg.Wait > 0 {
			left := f.cfg.Wait - time.Since(start)
			if left <= 0 {
				err = fmt.Errorf("%w %v: %w", ErrNotUp, f.cfg.Wait, err)
				f.log.Error("giving up on guest", "err", err)
				f.event(Event{State: StateFailed, Err: err})
				return err
			}
			wait = min(wait, left)
		}
		wait = wait.Round(time.Millisecond)
		if everUp {
			f.log.Warn("guest connection lost; reconnecting", "err", err, "retry_in", wait)
		} else {
			// It never connected: it is not "lost", it may be booting.
			f.log.Warn(fmt.Sprintf("waiting for %s (%s); retrying in %v", f.guest.Name, Reason(err), wait), "err", err, "retry_in", wait)
		}
		f.event(Event{State: StateBackoff, Err: err, Retry: time.Now().Add(wait)})
		select {
		case <-ctx.Done():
			f.event(Event{State: StateStopped})
			return nil
		case <-time.After(wait):
		}
	}
}

// ErrNotUp means a guest was not up within Config.Wait; it wraps the last
// error too.
var ErrNotUp = errors.New("guest not up within")

// ErrRelativeSocket means Guest.Socket is not an absolute path: sshd would
// take it relative to its own working directory.
var ErrRelativeSocket = errors.New("guest socket path is not absolute")

// Permanent reports errors that retrying does not fix: the name does not
// resolve, the host key is unknown or changed, authentication or the
// forward is refused, the guest socket path is in use or unsafe, or the
// config asks for a ProxyCommand.
func Permanent(err error) bool {
	return errors.Is(err, sshdial.ErrNoSuchHost) || errors.Is(err, sshdial.ErrHostUnknown) ||
		errors.Is(err, sshdial.ErrHostKeyChanged) || errors.Is(err, sshdial.ErrAuth) ||
		errors.Is(err, guestsock.ErrForwardRefused) || errors.Is(err, unixsock.ErrSocketInUse) ||
		errors.Is(err, guestsock.ErrUnsafeDir) || errors.Is(err, sshdial.ErrProxyCommand) ||
		errors.Is(err, ErrRelativeSocket)
}

// Reason says in a few words why an attempt failed, for the "waiting for"
// line: "connection refused", "no SSH banner", "timed out", or the error.
func Reason(err error) string {
	var ne net.Error
	switch {
	case neterr.Refused(err):
		return "connection refused"
	case neterr.HostUnreachable(err):
		return "no route to host"
	case neterr.NetUnreachable(err):
		return "network unreachable"
	case errors.Is(err, sshdial.ErrNoBanner):
		return "no SSH banner yet"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case err == nil:
		return "closed"
	}
	return err.Error()
}

// once connects, forwards and serves until the connection is lost or ctx is
// done. up reports whether the forward was established.
func (f *Forwarder) once(ctx context.Context) (up bool, err error) {
	leave, err := f.cfg.Starts.enter(ctx)
	if err != nil {
		return false, err
	}
	defer leave()
	client, err := sshdial.Dial(ctx, f.guest.Target, f.cfg.Dial)
	if err != nil {
		return false, err
	}
	defer client.Close()
	lost := keepalive(client, f.cfg.KeepaliveInterval, f.cfg.KeepaliveTimeout)

	// Setup steps share one deadline; closing the client unblocks them.
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(setupCtx, func() {
		if ctx.Err() != nil || setupCtx.Err() == context.DeadlineExceeded {
			client.Close()
		}
	})
	// The keeper session prepares the guest socket path, turns
	// TCP_NODELAY on in sshd, reads the guest's OS and pcsc-lite release
	// once the socket is there, and removes the socket on the way out
	// (cleanup): one session and one shell for all of it.
	keeper, err := guestsock.StartKeeper(client)
	if err != nil {
		stop()
		return false, err
	}
	defer keeper.Close()
	ln, info, err := f.listen(setupCtx, client, keeper)
	if !stop() && err == nil {
		err = fmt.Errorf("setting up the guest socket timed out")
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return false, err
	}
	leave() // the socket is there: the next guest may start
	// The OS and release only word a log line and the status: while other
	// guests are still starting, their sockets come first.
	f.cfg.Starts.quiet(ctx, probeWait)
	f.probe(ctx, keeper, &info)

	f.held = info.Socket
	ev := Event{State: StateUp, Socket: info.Socket}
	if gc, ok := info.Client(); ok {
		ev.GuestClient = &gc
		bridge.LogCompat(f.log, gc, f.cfg.Daemon, "cardshare")
	}
	f.log.Info("forward up", "guest_socket", info.Socket, "guest_os", info.OS)
	f.event(ev)

	rc := f.cfg.Relay
	rc.Logger = f.log
	rc.Daemon = f.cfg.Daemon
	rc.Stats = &f.stats
	rc.Guest = f.guest.Name
	if l, ok := f.cfg.Host.(bridge.Local); ok {
		rc.Local = l // the native backend serves the guest connections itself
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- bridge.Serve(serveCtx, ln, f.cfg.Host.Dial, &rc) }()
	gone := watchSocket(serveCtx, client, info.Socket, f.cfg.SocketCheck)

	select {
	case <-ctx.Done():
		<-served
		f.cleanup(client, keeper, info.Socket)
		return true, nil
	case err := <-lost:
		stopServe()
		<-served
		return true, err
	case err := <-gone:
		// Reconnecting prepares the path again, its directory included.
		stopServe()
		<-served
		return true, err
	case err := <-served:
		if err == nil {
			err = errors.New("forward closed")
		}
		return true, fmt.Errorf("guest connection lost: %w", err)
	}
}
