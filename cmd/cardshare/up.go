package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

type upOptions struct {
	config  string
	control string
}

func newUpCmd(g *globals) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Expose every guest of the config file and keep them up; SIGHUP reloads the file",
		Long: `up reads the config file, forwards the host pcscd into every guest it lists (as
expose does, one forward per guest), and runs until SIGINT or SIGTERM. It is
what the systemd service runs.

SIGHUP (systemctl --user reload cardshare) reloads the file: guests that were
removed stop, new guests start, changed guests restart (a changed host option
changes every guest), and guests whose settings did not change keep their
connections untouched. ssh_config is read again too. A file with an error is
refused with the file:line and a hint, and the running guests carry on as they
were; so does a running guest whose new settings do not resolve. A guest that
failed for good (an unknown host key, say) is retried on every reload.
log_level applies on reload, log_format at the next start.

` + "`cardshare status`" + ` shows each guest's state through a control socket, by default
$XDG_RUNTIME_DIR/cardshare/control.sock, in a directory only you can enter.

On a terminal, up also prints a line per guest state change; logs on stderr
stay machine-readable (log_format text or json in the config, or --log-format).`,
		Example: `  cardshare up
  cardshare up --config ./vms.yaml
  kill -HUP "$(pidof cardshare)"      # reload after editing the file
  cardshare status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{"up takes no guests on the command line", "list the guests in the config file (see `cardshare config --help`), or use `cardshare expose " + args[0] + "`"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd.Context(), g, o, cmd.Flags(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config `file` (default $XDG_CONFIG_HOME/cardshare/config.yaml)")
	f.StringVar(&o.control, "control-socket", "", "control socket `path` for `cardshare status` (default $XDG_RUNTIME_DIR/cardshare/control.sock)")
	return cmd
}

func runUp(ctx context.Context, g *globals, o *upOptions, flags *pflag.FlagSet, stdout io.Writer) error {
	// Before anything else: SIGHUP's default action ends the process. up
	// also owns SIGINT and SIGTERM (main catches them too), so that it
	// cleans up from any entry point.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// One P, for the latency of the relay hand-offs: see runExpose.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	file, err := configPath(o.config)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	ctl := o.control
	if ctl == "" {
		if ctl, err = control.DefaultSocket(); err != nil {
			return err
		}
	}
	f := &fleet{ctx: ctx, file: file, started: time.Now(), level: new(slog.LevelVar),
		verbose: g.verbose, prompt: terminalPrompt()}
	f.log = g.serviceLogger(flags, cfg.Host.LogFormat, f.level)
	f.setLevel(cfg.Host)
	f.out = &progress{w: stdout, chatty: isTerminal(g.stderr), sockets: map[string]string{}}
	f.warn(cfg)

	host, err := probeHost(ctx, cfg.Host)
	if err != nil {
		return err
	}
	f.log.Info("host pcscd", "socket", host.socket, "protocol", host.daemon.Version.String(), "releases", host.daemon.Releases())

	ln, err := control.Listen(ctl)
	if err != nil {
		return err
	}
	srv := control.Serve(ln, f.status, f.log)
	defer srv.Close()
	f.log.Info("control socket", "path", ctl)

	f.apply(cfg, host)
	f.mu.Lock()
	f.loaded = time.Now()
	f.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			f.stopAll()
			f.log.Info("stopped")
			return nil
		case <-hup:
			f.reload()
		}
	}
}

// serviceLogger is the logger of a long-running command: --log-format and
// -v, when given, win over the config file's log_format and log_level.
func (g *globals) serviceLogger(flags *pflag.FlagSet, format string, level *slog.LevelVar) *slog.Logger {
	if fl := flags.Lookup("log-format"); fl != nil && fl.Changed || format == "" {
		format = g.logFormat
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// isTerminal reports whether w is a terminal, where a person waits for
// progress.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// hostInfo is the host pcscd as probed.
type hostInfo struct {
	socket string
	daemon pcsc.Daemon
}

// probeHost asks the host pcscd for its protocol, failing with expose's
// error (and so its hint) when pcscd is not there; the socket path is set
// either way.
func probeHost(ctx context.Context, h config.Host) (hostInfo, error) {
	sock := h.PCSCDSocket
	if sock == "" {
		sock = defaultPCSCDSocket()
	}
	d, err := pcsc.Probe(ctx, sock)
	if err != nil {
		return hostInfo{socket: sock}, fmt.Errorf("host pcscd at %s: %w", sock, err)
	}
	return hostInfo{sock, d}, nil
}

// resolveGuest looks up where guest g is: a destination as ssh does, a VM
// name as `cardshare resolve` does (an ssh_config alias, else the VM
// managers, else a host name). from says where a VM's address came from.
func resolveGuest(ctx context.Context, g config.Guest, sshConfig string) (t sshdial.Target, from string, err error) {
	if g.VM == "" {
		t, err = sshdial.Resolve(ctx, g.Destination, sshConfig)
		return t, "", err
	}
	t, src, err := vm.Resolve(ctx, g.VM, sshConfig)
	return t, src.Kind, err
}

// fleet runs one forward.Forwarder per configured guest and applies
// reloads guest by guest.
type fleet struct {
	ctx     context.Context // parent of every guest's forward
	file    string
	started time.Time
	log     *slog.Logger
	level   *slog.LevelVar
	verbose bool // -v: debug whatever the file says
	prompt  func(string) ([]byte, error)
	out     *progress

	mu        sync.Mutex
	host      hostInfo
	loaded    time.Time
	reloadErr string
	guests    []*guestRun // in file order
}

// guestRun is one configured guest and, when it could be resolved, its
// forward.
type guestRun struct {
	conf   config.Guest
	spec   guestSpec
	fwd    *forward.Forwarder // nil when the guest could not be resolved
	err    error              // why it could not be resolved
	at     time.Time          // when it failed to resolve
	ctx    context.Context    // of fwd.Run and the guest setup
	cancel context.CancelFunc
	done   chan struct{} // closed when fwd.Run has returned
	setup  *setupOnUp    // nil unless setup_guest
}

// guestSpec is everything a guest's forward is made of. A reload leaves a
// guest alone exactly when its spec is unchanged.
type guestSpec struct {
	conf      config.Guest // Line zeroed: moving an entry changes nothing
	guest     forward.Guest
	host      hostInfo
	keepalive time.Duration
	acceptNew bool
}

func (r *guestRun) running() bool {
	if r.fwd == nil {
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
	if r.fwd != nil {
		r.cancel()
		<-r.done
		r.setup.wait()
	}
}

// apply makes the running guests those of cfg. Guests whose spec is
// unchanged are not touched; removed and changed ones are stopped (so a
// changed guest's old socket is gone) before new and changed ones start.
// A guest that cannot be resolved keeps its running forward, if it has
// one. apply returns those problems.
func (f *fleet) apply(cfg *config.Config, host hostInfo) []error {
	// Resolving may run ssh -G and the VM managers' tools: all at once.
	fresh := make([]*guestRun, len(cfg.Guests))
	var wg sync.WaitGroup
	for i, g := range cfg.Guests {
		r := &guestRun{conf: g, done: make(chan struct{})}
		r.spec.conf = g
		r.spec.conf.Line = 0
		r.spec.host, r.spec.keepalive, r.spec.acceptNew = host, cfg.Host.Keepalive, cfg.Host.AcceptNew
		fresh[i] = r
		wg.Go(func() {
			t, _, err := resolveGuest(f.ctx, g, cfg.Host.SSHConfig)
			if err != nil {
				r.err, r.at = err, time.Now()
				return
			}
			r.spec.guest = forward.Guest{Name: g.Name, Target: t, Socket: g.Socket}
		})
	}
	wg.Wait()

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
			f.log.Error("cannot resolve guest; keeping its running forward", "guest", name, "err", r.err, "hint", hint(r.err))
			problems = append(problems, &placedError{"guest " + name + " (running forward kept)", r.err})
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
		if r.err != nil {
			f.log.Error("cannot resolve guest", "guest", name, "err", r.err, "hint", hint(r.err))
			f.out.note("%s: cannot resolve: %s", name, r.err)
			problems = append(problems, &placedError{"guest " + name, r.err})
			continue
		}
		r.ctx, r.cancel = context.WithCancel(f.ctx)
		r.fwd = forward.NewForwarder(r.spec.guest, f.forwardConfig(r))
		start = append(start, r)
	}
	for name, o := range old {
		stop = append(stop, o)
		removed = append(removed, name)
	}
	f.guests, f.host = next, host
	f.mu.Unlock()

	slices.Sort(removed)
	f.log.Info("guests configured", "added", added, "removed", removed, "restarted", restarted, "unchanged", kept)
	stopAll(stop)
	for _, r := range start {
		go func() {
			defer close(r.done)
			if err := r.fwd.Run(r.ctx); err != nil {
				f.log.Error("guest stopped until the config is reloaded", "guest", r.conf.Name, "err", err, "hint", hint(err))
				f.out.note("%s: stopped until the next reload: %s", r.conf.Name, err)
				if h := hint(err); h != "" {
					f.out.note("    hint: %s", h)
				}
			}
		}()
	}
	return problems
}

func (f *fleet) forwardConfig(r *guestRun) *forward.Config {
	c := forward.DefaultConfig()
	c.HostSocket = r.spec.host.socket
	c.Daemon = r.spec.host.daemon
	if r.spec.keepalive > 0 {
		c.KeepaliveInterval = r.spec.keepalive
	}
	c.Logger = f.log
	c.Dial = sshdial.DialOptions{AcceptNew: r.spec.acceptNew, Prompt: f.prompt, Logger: f.log}
	// config.Validate has checked the patterns and the control value.
	c.Relay.Policy, _ = guestPolicy(r.conf.Readers, r.conf.Control)
	c.Relay.Audit = r.conf.Audit
	t := r.spec.guest.Target
	dest := t.Addr()
	if t.User != "" {
		dest = t.User + "@" + dest
	}
	// setup_guest points the guest user's programs at the socket once it
	// is known, as `expose --setup-guest` does.
	r.setup = newSetupOnUp(r.ctx, r.conf.SetupGuest, []forward.Guest{r.spec.guest}, c.Dial, f.out.w, f.log)
	c.OnEvent = func(e forward.Event) {
		f.out.event(e, dest)
		r.setup.up(e)
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

func (f *fleet) stopAll() {
	f.mu.Lock()
	runs := f.guests
	f.guests = nil
	f.mu.Unlock()
	stopAll(runs)
}

// reload reads the config file again and applies it. A file that does not
// parse, or a host pcscd that moved and is not there, changes nothing.
func (f *fleet) reload() {
	f.log.Info("reloading config", "file", f.file)
	cfg, err := config.Load(f.file)
	if err != nil {
		f.refuse(err)
		return
	}
	f.mu.Lock()
	prev := f.host
	f.mu.Unlock()
	host, err := probeHost(f.ctx, cfg.Host)
	switch {
	case err != nil && host.socket != prev.socket:
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
	f.mu.Lock()
	f.loaded = time.Now()
	f.reloadErr = ""
	if len(problems) > 0 {
		f.reloadErr = errors.Join(problems...).Error()
	}
	f.mu.Unlock()
	f.out.note("reloaded %s", f.file)
}

// refuse logs why a reload was refused, each error with its file:line and
// hint, and keeps everything running.
func (f *fleet) refuse(err error) {
	for _, e := range unjoin(err) {
		f.log.Error("config reload refused; the running guests are kept", "err", e, "hint", hint(e))
		f.out.note("reload refused: %s", e)
	}
	f.mu.Lock()
	f.reloadErr = err.Error()
	f.mu.Unlock()
}

func (f *fleet) setLevel(h config.Host) {
	if f.verbose {
		f.level.Set(slog.LevelDebug)
		return
	}
	f.level.Set(parseLevel(h.LogLevel))
}

func (f *fleet) warn(cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		f.log.Warn(w.Error(), "hint", w.Hint)
	}
}

// status is the control.StatusV1 document of the control socket.
func (f *fleet) status() control.StatusV1 {
	f.mu.Lock()
	s := control.StatusV1{
		Version:     control.StatusVersion,
		Mode:        control.ModeUp,
		PID:         os.Getpid(),
		Config:      f.file,
		Started:     f.started.UTC(),
		Loaded:      f.loaded.UTC(),
		ReloadError: f.reloadErr,
		Host:        control.HostStatus{PCSCDSocket: f.host.socket, Protocol: f.host.daemon.Version.String(), Releases: f.host.daemon.Releases()},
		Guests:      []control.GuestStatus{},
	}
	runs := slices.Clone(f.guests)
	f.mu.Unlock()
	for _, r := range runs {
		s.Guests = append(s.Guests, r.status())
	}
	return s
}

func (r *guestRun) status() control.GuestStatus {
	g := control.GuestStatus{
		Name:         r.conf.Name,
		Destination:  r.conf.Destination,
		VM:           r.conf.VM,
		Socket:       r.conf.Socket,
		HostProtocol: r.spec.host.daemon.Version.String(),
	}
	g.SetPolicy(r.conf.Readers, r.conf.Control == "deny", r.conf.Audit)
	if r.fwd == nil {
		g.State, g.Since, g.LastError = string(forward.StateFailed), r.at.UTC(), r.err.Error()
		return g
	}
	t := r.spec.guest.Target
	g.Address, g.User = t.Addr(), t.User
	st := r.fwd.Status()
	g.State, g.Since = string(st.State), st.Since.UTC()
	if st.State == forward.StateBackoff {
		at := st.Retry.UTC()
		g.RetryAt = &at
	}
	if st.Socket != "" {
		g.Socket = st.Socket
	}
	if c := st.GuestClient; c != nil {
		g.GuestProtocol, g.GuestRelease = c.Version.String(), c.Release
	}
	g.OpenConnections, g.Connections, g.FailedConnections = st.Open, st.Connections, st.Failed
	g.BytesUp, g.BytesDown = st.BytesUp, st.BytesDown
	g.LastError = st.LastError
	return g
}

// progress prints what a person waits for: always the export line when a
// guest's socket is first known or moves, and on a terminal (chatty) one
// line per state change.
type progress struct {
	w      io.Writer
	chatty bool

	mu      sync.Mutex
	sockets map[string]string
}

func (p *progress) event(e forward.Event, dest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.State {
	case forward.StateUp:
		if p.sockets[e.Guest] != e.Socket {
			p.sockets[e.Guest] = e.Socket
			fmt.Fprintf(p.w, "%s: host pcscd is at %s in the guest:\n    export PCSCLITE_CSOCK_NAME=%s\n", e.Guest, e.Socket, e.Socket)
		} else if p.chatty {
			fmt.Fprintf(p.w, "%s: up again\n", e.Guest)
		}
	case forward.StateConnecting:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: connecting to %s\n", e.Guest, dest)
		}
	case forward.StateBackoff:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: %s; retrying in %s\n", e.Guest, e.Err, roughly(time.Until(e.Retry)))
		}
	case forward.StateFailed:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: failed: %s\n", e.Guest, e.Err)
		}
	case forward.StateStopped:
		delete(p.sockets, e.Guest)
		if p.chatty {
			fmt.Fprintf(p.w, "%s: stopped\n", e.Guest)
		}
	}
}

// note prints a line on a terminal only.
func (p *progress) note(format string, args ...any) {
	if !p.chatty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// roughly rounds d for people: to the second, or to 100 ms below one.
func roughly(d time.Duration) time.Duration {
	if d < time.Second {
		return max(d, 0).Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// placedError says where err happened; its chain keeps err for hints.
type placedError struct {
	where string
	err   error
}

func (e *placedError) Error() string { return e.where + ": " + e.err.Error() }
func (e *placedError) Unwrap() error { return e.err }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
