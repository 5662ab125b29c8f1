package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

type exposeOptions struct {
	sshConfig   string
	acceptNew   bool
	guestSocket string
	backend     string
	pcscdSocket string
	keepalive   time.Duration
	wait        time.Duration
	setupGuest  bool
	readers     []string
	control     string
	audit       bool
	caps        cmdutil.ConnCaps
}

func newExposeCmd(g *cmdutil.Globals) *cobra.Command {
	o := &exposeOptions{backend: hostpcsc.Auto, pcscdSocket: cmdutil.DefaultPCSCDSocket()}
	cmd := &cobra.Command{
		Use:   "expose GUEST...",
		Short: "Forward the host pcscd into guests over SSH and keep the forwards up",
		Long: `expose connects to each GUEST over SSH, asks its sshd to forward a Unix socket
in the guest to the host pcscd, and relays every pcsc-lite connection that a
guest program opens there. It prints the socket path and the export line for
each guest, then runs until Ctrl-C, reconnecting when a guest goes away.

GUEST is an ssh_config Host alias, [user@]host[:port], or a VM name (VirtualBox,
libvirt, Vagrant, Lima, VMware, Parallels, UTM, Hyper-V: see "cardshare
resolve"). SSH settings come from
~/.ssh/config (or -F FILE) exactly as ssh evaluates them: HostName, Port, User,
IdentityFile, IdentitiesOnly, IdentityAgent, UserKnownHostsFile,
StrictHostKeyChecking, ProxyJump, Include and Match. Keys come from ssh-agent
and identity files. Host keys are checked against known_hosts; an unknown guest
is refused unless --accept-new (or StrictHostKeyChecking accept-new) allows
recording its key.

A mistake that cannot fix itself ends expose within seconds with an error and
a hint: a name that is no ssh_config Host, no VM and no host name, a refused
login, an unknown or changed host key, forwarding that the guest's sshd does
not allow. A guest that refuses the connection or does not answer may be
booting: it is tried again every few seconds for --wait (default 1m; 0 waits
for ever). Once a guest has been up, every loss is retried for as long as
expose runs.

The guest socket goes into a directory only the login user can enter
($XDG_RUNTIME_DIR/cardshare, else ~/.cardshare), so other guest users cannot
reach the card. A stale socket from an earlier run is removed first. The guest
needs only sshd, /bin/sh and pcsc-lite's client library; no cardshare binary.

Before relaying, cardshare checks the pcsc-lite protocol version on both ends.
When the guest's libpcsclite and the host's pcscd would reject each other
(pcsc-lite 2.2 and older against 2.3–2.4.0, 2.5 against anything older), it
translates between them; when it cannot, it logs an error naming both
versions and the fix.

--readers limits what the guest sees to the host readers whose names match
one of the patterns (* ? [...], as in shell globs): the others are absent from
every reader list, and connecting to one fails with "Unknown reader". pcscd
names readers "NAME XX YY", so end a pattern with *. --control deny refuses
SCardControl (reader escape commands), --audit logs every PC/SC call of the
guest (command, reader, return code, time, sizes; never data).`,
		Example: `  cardshare expose myvm
  cardshare expose vm1 vm2 vm3
  cardshare expose --accept-new -F ./ssh_config dev@192.168.122.10
  cardshare expose --guest-socket /home/me/.pcsc/pcscd.comm myvm
  cardshare expose --readers 'Yubico YubiKey*' --control deny myvm

  # then, in the guest:
  export PCSCLITE_CSOCK_NAME=/run/user/1000/cardshare/pcscd.comm
  pcsc_scan`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmdutil.Usage("expose needs at least one guest", "name it like ssh does: `cardshare expose myvm` or `cardshare expose user@host:2222`")
			}
			if o.guestSocket != "" && !path.IsAbs(o.guestSocket) {
				return cmdutil.Usage(fmt.Sprintf("--guest-socket %q is not an absolute path", o.guestSocket), "name the socket's full path in the guest (`--guest-socket /home/me/.pcsc/pcscd.comm`), or leave it out for a private default")
			}
			if o.keepalive < time.Second || o.keepalive > time.Hour {
				// The same bounds as keepalive: in the config file.
				return cmdutil.Usage(fmt.Sprintf("--keepalive %v is outside 1s–1h", o.keepalive), "a guest is checked every --keepalive; 5s (the default) notices a vanished guest within 15 s")
			}
			if o.wait < 0 {
				return cmdutil.Usage("--wait must not be negative", "give a duration such as 2m, or 0 to wait for ever")
			}
			if o.guestSocket != "" && len(args) > 1 {
				return cmdutil.Usage("--guest-socket names one path, but "+fmt.Sprint(len(args))+" guests were given", "run one cardshare per guest that needs its own path, or drop --guest-socket for per-guest defaults")
			}
			if _, err := cmdutil.GuestPolicy(o.readers, o.control); err != nil {
				return err
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExpose(cmd.Context(), g, o, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	cmdutil.SSHConfigFlag(f, &o.sshConfig)
	cmdutil.AcceptNewFlag(f, &o.acceptNew)
	cmdutil.GuestSocketFlag(f, &o.guestSocket, " (default: a private directory of the login user)")
	cmdutil.BackendFlag(f, &o.backend)
	cmdutil.PCSCDSocketFlag(f, &o.pcscdSocket)
	f.DurationVar(&o.wait, "wait", time.Minute, "how long to keep trying a guest that refuses or does not answer before it was ever up (it may be booting); 0 waits for ever")
	f.DurationVar(&o.keepalive, "keepalive", 5*time.Second, "how often to check that each guest is alive; a dead guest is noticed within this plus 10s")
	f.BoolVar(&o.setupGuest, "setup-guest", false, "once a forward is up, point the guest user's programs at it (as cardshare guest setup does)")
	f.StringArrayVar(&o.readers, "readers", nil, "show the guests only the host readers matching `pattern` (* ? [...]; repeat for more)")
	f.StringVar(&o.control, "control", "allow", "allow or deny SCardControl (reader escape commands) to the guests")
	f.BoolVar(&o.audit, "audit", false, "log one line per PC/SC call of the guests (never data)")
	cmdutil.ConnCapsFlags(f, &o.caps)
	return cmd
}

func runExpose(ctx context.Context, g *cmdutil.Globals, o *exposeOptions, dests []string, stdout io.Writer) error {
	defer cmdutil.OneProc()()
	log := g.Logger()
	ctx, stopHup := cmdutil.HangupStops(ctx, log)
	defer stopHup()
	limiter, err := o.caps.Limiter(log)
	if err != nil {
		return err
	}
	src, daemon, err := cmdutil.OpenHost(ctx, log, o.backend, o.pcscdSocket)
	if err != nil {
		return err
	}
	defer hostpcsc.Close(src)
	if len(o.readers) > 0 || o.control == "deny" || o.audit {
		if err := pcsc.CheckPolicyDaemon(daemon); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}

	guests := make([]forward.Guest, 0, len(dests))
	words := map[string]cmdutil.Guest{}
	for _, d := range dests {
		if _, ok := words[d]; ok {
			return cmdutil.Usage(fmt.Sprintf("guest %q is named twice", d), "name each guest once")
		}
		t, src, err := vm.Resolve(ctx, d, o.sshConfig)
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		words[d] = cmdutil.Guest{Name: d, SSHConfig: o.sshConfig, Target: t, Source: src, Resolved: true}
		guests = append(guests, forward.Guest{Name: d, Target: t, Socket: o.guestSocket})
	}

	var mu sync.Mutex
	printed := map[string]string{}
	cfg := forward.DefaultConfig()
	cfg.Host = src
	cfg.Daemon = daemon
	cfg.KeepaliveInterval = o.keepalive
	cfg.Wait = o.wait
	cfg.Logger = log
	cfg.Dial = sshdial.DialOptions{AcceptNew: o.acceptNew, Prompt: terminalPrompt(), Logger: log}
	cfg.Relay.Policy, _ = cmdutil.GuestPolicy(o.readers, o.control) // checked in Args
	cfg.Relay.Audit = o.audit
	cfg.Relay.Limiter = limiter
	setup := newSetupOnUp(ctx, o.setupGuest, guests, cfg.Dial, stdout, log)
	defer setup.Wait()
	cfg.OnEvent = func(e forward.Event) {
		if e.State != forward.StateUp {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if printed[e.Guest] == e.Socket {
			return
		}
		printed[e.Guest] = e.Socket
		fmt.Fprintf(stdout, "%s: host pcscd is at %s in the guest:\n    export PCSCLITE_CSOCK_NAME=%s\n", e.Guest, e.Socket, e.Socket)
		setup.Up(e.Guest, e.Socket)
	}
	err = forward.Expose(ctx, guests, cfg)
	if err == nil && ctx.Err() != nil {
		log.Info("stopped")
	}
	return inGuestWords(err, words)
}

// inGuestWords gives each guest's error a hint in the user's own words
// (their -F file, the guest's name, their known_hosts file).
func inGuestWords(err error, words map[string]cmdutil.Guest) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var ge *forward.GuestError
		if errors.As(e, &ge) {
			if h := cmdutil.GuestHint(e, words[ge.Guest]); h != "" {
				e = cmdutil.WithHint(e, h)
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// terminalPrompt asks for key passphrases on the controlling terminal, or
// returns nil when there is none, so encrypted keys are skipped instead of
// blocking a service.
func terminalPrompt() func(string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	tty.Close()
	var mu sync.Mutex
	return func(prompt string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer tty.Close()
		if !term.IsTerminal(int(tty.Fd())) {
			return nil, errors.New("no terminal for the passphrase prompt")
		}
		fmt.Fprint(tty, prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return b, err
	}
}
