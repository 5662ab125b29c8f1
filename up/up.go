package up

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// Options are what a Supervisor needs besides the config file's contents.
type Options struct {
	// File is the config file; Reload reads it again.
	File string
	// Logger receives lifecycle events and errors; nil discards them.
	Logger *slog.Logger
	// Level, when set, follows the file's log_level (on start and on every
	// reload), or stays at debug with Verbose (-v).
	Level   *slog.LevelVar
	Verbose bool
	// Prompt asks for the passphrase of an encrypted identity file; nil
	// means there is no one to ask.
	Prompt func(prompt string) ([]byte, error)
	// DefaultPCSCDSocket is the host pcscd socket when the file sets none.
	DefaultPCSCDSocket string
	// Backend, when set (--backend), wins over the file's host.backend:
	// where the host's PC/SC comes from (hostpcsc.New).
	Backend string
	// Hint says what the user can do about an error; it becomes the "hint"
	// attribute of error logs. nil gives none.
	Hint func(error) string
	// GuestHint, when set, is Hint for an error of one guest, so that the
	// commands it suggests name that guest and the file's ssh_config
	// (`ssh -F FILE myvm`). nil uses Hint.
	GuestHint func(g config.Guest, sshConfig string, err error) string
	// OnEvent, when set, is called on every change of a guest's state,
	// with the guest's user@host:port. It must not block.
	OnEvent func(e forward.Event, dest string)
	// Note, when set, receives a line for a person waiting at a terminal:
	// a guest that cannot be resolved, a refused reload...
	Note func(format string, args ...any)
	// SetupReport receives the results of setup_guest (see
	// guestsetup.NewAuto); nil turns setup_guest off.
	SetupReport func(guest, socket string, res guestsetup.Result, err error)
	// Limiter caps the pcsc-lite connections of each guest and of all of
	// them together (host.max_guest_conns, host.max_conns). It is shared
	// by every guest and kept across reloads; nil means connlimit's
	// defaults.
	Limiter *connlimit.Limiter
}

// New returns a Supervisor whose forwards run until ctx ends or Stop.
func New(ctx context.Context, opts Options) *Supervisor {
	f := &Supervisor{ctx: ctx, opts: opts, started: time.Now(), log: opts.Logger,
		lookup: Lookup, starts: forward.NewStartGate(0, 0)}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.opts.Limiter == nil {
		f.opts.Limiter, _ = connlimit.New(&connlimit.Config{Logger: f.log}) // the defaults are valid
	}
	return f
}

// Load takes the config file's contents for Start: it applies log_level,
// logs the file's warnings and probes the host pcscd, which must answer.
func (f *Supervisor) Load(cfg *config.Config) error {
	f.setLevel(cfg.Host)
	f.warn(cfg)
	host, err := f.probeHost(f.ctx, cfg.Host, hostInfo{})
	if err != nil {
		return err
	}
	f.log.Info("host PC/SC", "backend", hostpcsc.BackendOf(host.src), "source", host.src.String(), "protocol", host.daemon.Version.String(), "releases", host.daemon.Releases())
	if proxied(cfg) {
		// A reader policy or audit log must read every message: refuse
		// a daemon whose protocol the proxy does not know, rather than
		// start and refuse each connection.
		if err := pcsc.CheckPolicyDaemon(host.daemon); err != nil {
			hostpcsc.Close(host.src)
			return fmt.Errorf("%s: %w", host.src, err)
		}
	}
	f.mu.Lock()
	f.pending, f.host = cfg, host
	f.mu.Unlock()
	return nil
}

// Start starts the guests of the config that Load took.
func (f *Supervisor) Start() {
	f.mu.Lock()
	cfg, host := f.pending, f.host
	f.pending = nil
	f.mu.Unlock()
	if cfg == nil {
		return
	}
	f.apply(cfg, host)
	f.mu.Lock()
	f.loaded = time.Now()
	f.mu.Unlock()
}

func (f *Supervisor) guestHint(g config.Guest, sshConfig string, err error) string {
	if f.opts.GuestHint == nil {
		return f.hint(err)
	}
	return f.opts.GuestHint(g, sshConfig, err)
}

func (f *Supervisor) hint(err error) string {
	if f.opts.Hint == nil {
		return ""
	}
	return f.opts.Hint(err)
}

func (f *Supervisor) note(format string, args ...any) {
	if f.opts.Note != nil {
		f.opts.Note(format, args...)
	}
}

// proxied reports whether a guest of cfg has a reader policy or an audit
// log, which the protocol-aware proxy applies.
func proxied(cfg *config.Config) bool {
	for _, g := range cfg.Guests {
		if g.Audit || policy(g) != nil {
			return true
		}
	}
	return false
}

// policy is the reader policy of a guest that config.Validate accepted:
// nil when it allows everything.
func policy(g config.Guest) *pcsc.Policy {
	deny := g.Control == "deny"
	if len(g.Readers) == 0 && !deny {
		return nil
	}
	return &pcsc.Policy{Readers: g.Readers, DenyControl: deny}
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

// hostInfo is the host's PC/SC as chosen and probed.
type hostInfo struct {
	backend string
	socket  string
	src     hostpcsc.Source
	daemon  pcsc.Daemon
}

// probeHost chooses the host's PC/SC (hostpcsc.Open) and asks it for its
// protocol, failing with expose's error (and so its hint) when it does not
// answer; backend and socket are set either way. When they are prev's,
// prev's source is asked again instead: a native source (and auto's
// choice) lives as long as the host settings do, and guests that keep
// running keep the source they dial.
func (f *Supervisor) probeHost(ctx context.Context, h config.Host, prev hostInfo) (hostInfo, error) {
	sock := h.PCSCDSocket
	if sock == "" {
		sock = f.opts.DefaultPCSCDSocket
	}
	backend := h.Backend
	if f.opts.Backend != "" {
		backend = f.opts.Backend
	}
	if prev.src != nil && prev.backend == backend && prev.socket == sock {
		d, err := hostpcsc.Probe(ctx, prev.src)
		return hostInfo{backend, sock, prev.src, d}, err
	}
	src, d, err := hostpcsc.Open(ctx, backend, sock, f.log)
	return hostInfo{backend, sock, src, d}, err
}

// closeUnused closes src unless the host or a guest still uses it.
func (f *Supervisor) closeUnused(src hostpcsc.Source) {
	if src == nil {
		return
	}
	f.mu.Lock()
	used := f.host.src == src
	for _, r := range f.guests {
		used = used || r.spec.host.src == src
	}
	f.mu.Unlock()
	if !used {
		hostpcsc.Close(src)
	}
}

// Resolve looks up where guest g is: a destination as ssh does, a VM
// name as `cardshare resolve` does (an ssh_config alias, else the VM
// managers, else a host name). from says where a VM's address came from.
func Resolve(ctx context.Context, g config.Guest, sshConfig string) (t sshdial.Target, from string, err error) {
	t, src, err := Lookup(ctx, g, sshConfig)
	return t, src.Kind, err
}

// Lookup is Resolve with the whole vm.Source of a VM guest (the zero
// Source for a destination).
func Lookup(ctx context.Context, g config.Guest, sshConfig string) (sshdial.Target, vm.Source, error) {
	if g.VM == "" {
		if err := sshdial.CheckConfigFile(sshConfig); err != nil {
			return sshdial.Target{}, vm.Source{}, err
		}
		t, err := sshdial.Resolve(ctx, g.Destination, sshConfig)
		return t, vm.Source{}, err
	}
	return vm.Resolve(ctx, g.VM, sshConfig)
}

// VMWarning is the warning for a guest whose vm: no ssh_config block and
// no VM manager knew, so that it became a plain host name (a typo, or a VM
// manager that is not installed): "" when there is nothing to warn about.
func VMWarning(g config.Guest, src vm.Source, sshConfig string) string {
	if g.VM == "" || !src.Unknown() {
		return ""
	}
	return fmt.Sprintf("guest %s: %s; connecting to it as the host name %s", g.Name, src.WhereLooked(g.VM, sshConfig), g.VM)
}

// PlacedError says where Err happened ("cardshare.yaml:12: guest vm1");
// its chain keeps Err, so hints are still chosen from it.
type PlacedError struct {
	Where string
	Err   error
}

func (e *PlacedError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *PlacedError) Unwrap() error { return e.Err }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
