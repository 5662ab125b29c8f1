package up

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/ccid"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// Supervisor runs one forward.Forwarder per configured guest and applies
// reloads guest by guest.
type Supervisor struct {
	ctx     context.Context // parent of every guest's forward
	opts    Options
	started time.Time
	log     *slog.Logger

	mu        sync.Mutex
	pending   *config.Config // what Load took for Start
	host      hostInfo
	loaded    time.Time
	reloadErr string
	guests    []*guestRun // in file order
	gen       int         // counts the changes of guests (startEach)

	// lookup is Lookup; tests replace it.
	lookup func(ctx context.Context, g config.Guest, sshConfig string) (sshdial.Target, vm.Source, error)
	// starts is shared by the forwards of every guest: see
	// forward.StartGate.
	starts *forward.StartGate
}

// guestRun is one configured guest and, when it could be resolved, its
// forward.
type guestRun struct {
	conf   config.Guest
	spec   guestSpec
	fwd    *forward.Forwarder // nil when the guest could not be resolved, or has ccid:
	bridge *ccid.Bridge       // a ccid: guest's; nil when it could not be started
	runErr error              // why fwd.Run or bridge.Run ended; read after done
	err    error              // why it could not be resolved
	at     time.Time          // when it failed to resolve
	ctx    context.Context    // of fwd.Run and the guest setup
	cancel context.CancelFunc
	done   chan struct{}    // closed when fwd.Run has returned
	setup  *guestsetup.Auto // nil unless setup_guest
	// resolving marks the stand-in that startEach shows in the status
	// until the guest is resolved.
	resolving bool
}

// guestSpec is everything a guest's forward is made of. A reload leaves a
// guest alone exactly when its spec is unchanged.
type guestSpec struct {
	conf      config.Guest // Line zeroed: moving an entry changes nothing
	guest     forward.Guest
	host      hostInfo
	keepalive time.Duration
	acceptNew bool
	chardevs  []ccid.Endpoint // a ccid: guest's
}

func (r *guestRun) running() bool {
	if r.fwd == nil && r.bridge == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *guestRun) stop() {
	if r.fwd != nil || r.bridge != nil {
		r.cancel()
		<-r.done
		r.setup.Wait()
	}
}

// resolveSlots bounds how many guests are resolved at once: each may run
// `ssh -G` or a VM manager's tool, a process of its own, and a hundred of
// them at once only slow each other down.
const resolveSlots = 8

// newRun returns the run of guest g of cfg, not resolved yet.
func newRun(g config.Guest, cfg *config.Config, host hostInfo) *guestRun {
	r := &guestRun{conf: g, done: make(chan struct{})}
	r.spec.conf = g
	r.spec.conf.Line = 0
	r.spec.host, r.spec.keepalive, r.spec.acceptNew = host, cfg.Host.Keepalive, cfg.Host.AcceptNew
	return r
}

// resolveRuns resolves the guests of runs (their spec, or their err): at
// most resolveSlots at once, once for guests that name the same
// destination or VM (many guest sockets on one machine). It calls each(i)
// as soon as runs[i] is resolved, not when the slowest is, and returns
// when all are.
func (f *Supervisor) resolveRuns(sshConfig string, runs []*guestRun, each func(i int)) {
	type resolution struct {
		once sync.Once
		t    sshdial.Target
		src  vm.Source
		err  error
	}
	resolved := map[[2]string]*resolution{}
	slots := make(chan struct{}, resolveSlots)
	var wg sync.WaitGroup
	for i, r := range runs {
		g := r.conf
		key := [2]string{g.Destination, g.VM}
		res := resolved[key]
		if res == nil {
			res = new(resolution)
			resolved[key] = res
		}
		wg.Go(func() {
			defer each(i)
			slots <- struct{}{}
			if g.CCID != nil {
				if r.spec.chardevs, r.err = CCIDChardevs(f.ctx, g); r.err != nil {
					r.at = time.Now()
				}
				<-slots
				return
			}
			res.once.Do(func() { res.t, res.src, res.err = f.lookup(f.ctx, g, sshConfig) })
			<-slots
			t, src, err := res.t, res.src, res.err
			if err != nil {
				r.err, r.at = err, time.Now()
				return
			}
			if w := VMWarning(g, src, sshConfig); w != "" {
				f.log.Warn(w, "guest", g.Name, "hint", "check the name: `cardshare resolve "+g.VM+"` shows where it leads")
			}
			r.spec.guest = forward.Guest{Name: g.Name, Target: t, Socket: g.Socket}
		})
	}
	wg.Wait()
}

// apply makes the running guests those of cfg. Guests whose spec is
// unchanged are not touched; removed and changed ones are stopped (so a
// changed guest's old socket is gone) before new and changed ones start.
// A guest that cannot be resolved keeps its running forward, if it has
// one. apply returns those problems.
//
// With no guest running (the first start), each guest starts as soon as
// it is resolved (startEach).
func (f *Supervisor) apply(cfg *config.Config, host hostInfo) []error {
	f.mu.Lock()
	first := len(f.guests) == 0
	f.mu.Unlock()
	if first {
		return f.startEach(cfg, host)
	}
	fresh := make([]*guestRun, len(cfg.Guests))
	for i, g := range cfg.Guests {
		fresh[i] = newRun(g, cfg, host)
	}
	f.resolveRuns(cfg.Host.SSHConfig, fresh, func(int) {})

	var problems []error
	var next, stop, start []*guestRun
	var added, removed, restarted, kept []string
	f.mu.Lock()
	old := map[string]*guestRun{}
	for _, r := range f.guests {
		old[r.conf.Name] = r
	}
	for _, r := range fresh {
		name := r.conf.Name
		o := old[name]
		delete(old, name)
		switch {
		case o != nil && r.err != nil && o.running():
			f.log.Error("cannot resolve guest; keeping its running forward", "guest", name, "err", r.err, "hint", f.hint(r.err))
			problems = append(problems, &PlacedError{"guest " + name + " (running forward kept)", r.err})
			next = append(next, o)
			continue
		case o != nil && o.running() && reflect.DeepEqual(o.spec, r.spec):
			kept = append(kept, name)
			next = append(next, o)
			continue
		case o != nil:
			stop = append(stop, o)
			restarted = append(restarted, name)
		default:
			added = append(added, name)
		}
		next = append(next, r)
		if err := f.prepareRun(r); err != nil {
			problems = append(problems, err)
			continue
		}
		start = append(start, r)
	}
	for name, o := range old {
		stop = append(stop, o)
		removed = append(removed, name)
	}
	f.guests, f.host = next, host
	f.gen++
	f.mu.Unlock()

	slices.Sort(removed)
	f.log.Info("guests configured", "added", added, "removed", removed, "restarted", restarted, "unchanged", kept)
	stopAll(stop)
	for _, r := range start {
		f.launch(r, cfg.Host.SSHConfig)
	}
	return problems
}

// startEach starts the guests of cfg when none is running: each as soon
// as it is resolved, so that one slow `ssh -G` or VM manager delays no
// other guest. Until then a guest shows as connecting. A Reload or Stop
// that comes first wins: guests resolved after it are not started.
func (f *Supervisor) startEach(cfg *config.Config, host hostInfo) []error {
	fresh := make([]*guestRun, len(cfg.Guests))
	waiting := make([]*guestRun, len(cfg.Guests))
	names := make([]string, len(cfg.Guests))
	for i, g := range cfg.Guests {
		fresh[i] = newRun(g, cfg, host)
		waiting[i] = &guestRun{conf: g, resolving: true, at: time.Now(), done: make(chan struct{})}
		names[i] = g.Name
	}
	f.mu.Lock()
	f.guests, f.host = waiting, host
	f.gen++
	gen := f.gen
	f.mu.Unlock()
	f.log.Info("guests configured", "added", names, "removed", []string(nil), "restarted", []string(nil), "unchanged", []string(nil))

	var mu sync.Mutex
	var problems []error
	f.resolveRuns(cfg.Host.SSHConfig, fresh, func(i int) {
		r := fresh[i]
		f.mu.Lock()
		if f.gen != gen {
			f.mu.Unlock()
			return
		}
		f.guests[i] = r
		err := f.prepareRun(r)
		f.mu.Unlock()
		if err != nil {
			mu.Lock()
			problems = append(problems, err)
			mu.Unlock()
			return
		}
		f.launch(r, cfg.Host.SSHConfig)
	})
	return problems
}

// prepareRun makes the forward (or ccid bridge) of a resolved guest, or
// logs why it cannot have one and returns that. f.mu is held.
func (f *Supervisor) prepareRun(r *guestRun) error {
	name := r.conf.Name
	if r.err != nil {
		f.log.Error("cannot resolve guest", "guest", name, "err", r.err, "hint", f.hint(r.err))
		f.note("%s: cannot resolve: %s", name, r.err)
		return &PlacedError{"guest " + name, r.err}
	}
	r.ctx, r.cancel = context.WithCancel(f.ctx)
	if r.conf.CCID != nil {
		if r.bridge, r.err = f.newBridge(r); r.err != nil {
			r.at = time.Now()
			f.log.Error("cannot start ccid guest", "guest", name, "err", r.err, "hint", f.hint(r.err))
			f.note("%s: cannot start: %s", name, r.err)
			return &PlacedError{"guest " + name, r.err}
		}
		f.log.Info("ccid guest", "guest", name, "chardevs", len(r.spec.chardevs), "reader", r.conf.CCID.Reader)
		return nil
	}
	r.fwd = forward.NewForwarder(r.spec.guest, f.forwardConfig(r))
	return nil
}

// launch runs the forward (or bridge) that prepareRun made, until its
// context ends.
func (f *Supervisor) launch(r *guestRun, sshConfig string) {
	go func() {
		defer close(r.done)
		var err error
		if r.bridge != nil {
			if err = r.bridge.Run(r.ctx); r.ctx.Err() != nil {
				err = nil
			}
		} else {
			err = r.fwd.Run(r.ctx)
		}
		r.runErr = err
		if err != nil {
			h := f.guestHint(r.conf, sshConfig, err)
			f.log.Error("guest stopped until the config is reloaded", "guest", r.conf.Name, "err", err, "hint", h)
			f.note("%s: stopped until the next reload: %s", r.conf.Name, err)
			if h != "" {
				f.note("    hint: %s", h)
			}
		}
	}()
}

func (f *Supervisor) forwardConfig(r *guestRun) *forward.Config {
	c := forward.DefaultConfig()
	c.Host = r.spec.host.src
	c.HostSocket = r.spec.host.socket
	c.Daemon = r.spec.host.daemon
	if r.spec.keepalive > 0 {
		c.KeepaliveInterval = r.spec.keepalive
	}
	c.Logger = f.log
	// A service keeps trying a guest whose name does not resolve yet (its
	// VM manager's DNS may register it at boot); status shows why. The
	// other permanent errors need a change of config or guest.
	c.GiveUp = func(err error) bool { return forward.Permanent(err) && !errors.Is(err, sshdial.ErrNoSuchHost) }
	c.Dial = sshdial.DialOptions{AcceptNew: r.spec.acceptNew, Prompt: f.opts.Prompt, Logger: f.log}
	c.Relay.Policy = policy(r.conf)
	c.Relay.Audit = r.conf.Audit
	c.Relay.Limiter = f.opts.Limiter
	c.Starts = f.starts
	t := r.spec.guest.Target
	dest := t.Addr()
	if t.User != "" {
		dest = t.User + "@" + dest
	}
	// setup_guest points the guest user's programs at the socket once it
	// is known, as `expose --setup-guest` does.
	if r.conf.SetupGuest && f.opts.SetupReport != nil {
		targets := map[string]sshdial.Target{r.spec.guest.Name: r.spec.guest.Target}
		r.setup = guestsetup.NewAuto(r.ctx, targets, c.Dial, f.opts.SetupReport)
	}
	c.OnEvent = func(e forward.Event) {
		if f.opts.OnEvent != nil {
			f.opts.OnEvent(e, dest)
		}
		if e.State == forward.StateUp {
			r.setup.Up(e.Guest, e.Socket)
		}
	}
	return c
}

func stopAll(runs []*guestRun) {
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(r.stop)
	}
	wg.Wait()
}

// Stop stops every guest's forward and waits for them (and their guest
// setups) to end, then closes the host's PC/SC sources.
func (f *Supervisor) Stop() {
	f.mu.Lock()
	runs := f.guests
	f.guests = nil
	f.gen++
	host := f.host
	f.host.src = nil
	f.mu.Unlock()
	stopAll(runs)
	for _, r := range runs {
		f.closeUnused(r.spec.host.src)
	}
	f.closeUnused(host.src)
}

// Reload reads the config file again and applies it. A file that does not
// parse, or a host pcscd that moved and is not there, changes nothing.
func (f *Supervisor) Reload() {
	f.log.Info("reloading config", "file", f.opts.File)
	cfg, err := config.Load(f.opts.File)
	if err != nil {
		f.refuse(err)
		return
	}
	f.mu.Lock()
	prev := f.host
	f.mu.Unlock()
	host, err := f.probeHost(f.ctx, cfg.Host, prev)
	switch {
	case err != nil && (host.socket != prev.socket || host.backend != prev.backend):
		f.refuse(err)
		return
	case err != nil:
		// The same pcscd as before is down for now; the forwards redial
		// it per connection, so keep what is known of it.
		f.log.Warn("host pcscd did not answer; keeping its last known protocol", "err", err)
		host = prev
	}
	f.setLevel(cfg.Host)
	f.warn(cfg)
	problems := f.apply(cfg, host)
	f.closeUnused(prev.src)
	f.mu.Lock()
	f.loaded = time.Now()
	f.reloadErr = ""
	if len(problems) > 0 {
		f.reloadErr = errors.Join(problems...).Error()
	}
	f.mu.Unlock()
	f.note("reloaded %s", f.opts.File)
}

// refuse logs why a reload was refused, each error with its file:line and
// hint, and keeps everything running.
func (f *Supervisor) refuse(err error) {
	for _, e := range unjoin(err) {
		f.log.Error("config reload refused; the running guests are kept", "err", e, "hint", f.hint(e))
		f.note("reload refused: %s", e)
	}
	f.mu.Lock()
	f.reloadErr = err.Error()
	f.mu.Unlock()
}

func (f *Supervisor) setLevel(h config.Host) {
	switch {
	case f.opts.Level == nil:
	case f.opts.Verbose:
		f.opts.Level.Set(slog.LevelDebug)
	default:
		f.opts.Level.Set(parseLevel(h.LogLevel))
	}
}

func (f *Supervisor) warn(cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		f.log.Warn(w.Error(), "hint", w.Hint)
	}
}
