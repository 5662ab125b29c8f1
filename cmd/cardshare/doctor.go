package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

type doctorOptions struct {
	sshConfig   string
	acceptNew   bool
	guestSocket string
	pcscdSocket string
	strict      bool
}

func newDoctorCmd(g *globals) *cobra.Command {
	o := &doctorOptions{pcscdSocket: defaultPCSCDSocket()}
	cmd := &cobra.Command{
		Use:   "doctor [GUEST]",
		Short: "Check the host, and a guest, for what cardshare needs; print a fix for each problem",
		Long: `doctor checks, in order, and prints a line per check (OK, WARN, FAIL or SKIP)
with a fix for each problem:

  host pcscd      the host pcscd answers, and its protocol version
  readers         pcscd lists at least one reader
  polkit          whether pcscd's polkit check may refuse cardshare (pcscd built with
                  polkit, cardshare outside an active local session, e.g. as a service)

and with GUEST (an ssh_config alias, [user@]host[:port] or a VM name, as for expose):

  ssh             the guest is reachable and accepts your key
  forwarding      the guest's sshd allows Unix socket forwarding
  guest socket    the socket's directory is private, and what is at the path now
  libpcsclite     the guest's pcsc-lite client library and the host pcscd can talk
  environment     the login user's programs are pointed at the socket (guest setup)

doctor changes nothing, except that it creates the guest socket's private
directory as expose would. The exit status is 0 when no check fails; warnings
fail only with --strict.`,
		Example: `  cardshare doctor
  cardshare doctor myvm
  cardshare doctor --guest-socket /home/me/.pcsc/pcscd.comm myvm`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &usageError{fmt.Sprintf("doctor checks one guest at a time, got %d", len(args)), "run `cardshare doctor GUEST` for each guest"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			d := newDoctor(o, cmd.OutOrStdout())
			return d.run(cmd.Context(), g, args)
		},
	}
	f := cmd.Flags()
	sshConfigFlag(f, &o.sshConfig)
	acceptNewFlag(f, &o.acceptNew)
	guestSocketFlag(f, &o.guestSocket, ", as given to expose (default: expose's default)")
	pcscdSocketFlag(f, &o.pcscdSocket)
	f.BoolVar(&o.strict, "strict", false, "exit non-zero on warnings too")
	return cmd
}

type checkStatus string

const (
	statusOK   checkStatus = "OK"
	statusWarn checkStatus = "WARN"
	statusFail checkStatus = "FAIL"
	statusSkip checkStatus = "SKIP"
)

// checkResult is one line of doctor's report, and a fix.
type checkResult struct {
	Status checkStatus
	Msg    string
	Fix    string
}

// doctor runs the checks. The fields other than o and w let tests replace
// what doctor learns about the host.
type doctor struct {
	o *doctorOptions
	w io.Writer

	// pcscdVersion returns the output of `pcscd -v`.
	pcscdVersion func(context.Context) (string, error)
	// pcscdArgs returns the command lines of the running pcscd processes.
	pcscdArgs func() [][]string
	getenv    func(string) string

	failed, warned int
}

func newDoctor(o *doctorOptions, w io.Writer) *doctor {
	return &doctor{o: o, w: w, pcscdVersion: pcscdVersionOutput, pcscdArgs: runningPCSCD, getenv: os.Getenv}
}

// errChecksFailed ends doctor with exit status 1; the report says why.
var errChecksFailed = errors.New("doctor: checks failed")

func (d *doctor) report(name string, r checkResult) {
	fmt.Fprintf(d.w, "%-4s  %-13s %s\n", r.Status, name, r.Msg)
	if r.Fix != "" && (r.Status == statusFail || r.Status == statusWarn) {
		fmt.Fprintf(d.w, "      %-13s %s\n", "", "fix: "+r.Fix)
	}
	switch r.Status {
	case statusFail:
		d.failed++
	case statusWarn:
		d.warned++
	}
}

func (d *doctor) run(ctx context.Context, g *globals, args []string) error {
	daemon, probeErr := pcsc.Probe(ctx, d.o.pcscdSocket)
	d.report("host pcscd", hostCheck(d.o.pcscdSocket, daemon, probeErr))
	if probeErr != nil {
		d.report("readers", checkResult{Status: statusSkip, Msg: "needs the host pcscd"})
	} else {
		rs, err := listReaders(ctx, d.o.pcscdSocket, daemon)
		d.report("readers", readersCheck(rs, err))
	}
	d.report("polkit", d.polkitCheck(ctx, probeErr))

	if len(args) == 1 {
		var dp *pcsc.Daemon
		if probeErr == nil {
			dp = &daemon
		}
		d.guestChecks(ctx, g, args[0], dp)
	}

	switch {
	case d.failed > 0:
		return fmt.Errorf("%w: %d failed, %d warned", errChecksFailed, d.failed, d.warned)
	case d.warned > 0 && d.o.strict:
		return fmt.Errorf("%w: %d warned (--strict)", errChecksFailed, d.warned)
	}
	return nil
}

func hostCheck(socket string, daemon pcsc.Daemon, err error) checkResult {
	switch {
	case err == nil:
		return checkResult{Status: statusOK, Msg: fmt.Sprintf("%s answers: %s", socket, daemon)}
	case errors.Is(err, pcsc.ErrNoDaemon):
		return checkResult{Status: statusFail, Msg: fmt.Sprintf("nothing listens on %s", socket),
			Fix: "install and start pcscd (`sudo apt install pcscd`, `sudo systemctl enable --now pcscd.socket`), or point --pcscd-socket at its socket"}
	case errors.Is(err, pcsc.ErrRefused):
		return checkResult{Status: statusFail, Msg: fmt.Sprintf("%s closed the connection without answering", socket),
			Fix: "that is how pcscd's polkit check refuses: see the polkit line below"}
	}
	return checkResult{Status: statusFail, Msg: err.Error(), Fix: hint(err)}
}

func readersCheck(rs []reader, err error) checkResult {
	if err != nil {
		return checkResult{Status: statusFail, Msg: "could not list the readers: " + err.Error(),
			Fix: "check the host with `pcsc_scan`; a pcscd built with more than 16 reader slots (Fedora) is not supported by this check"}
	}
	if len(rs) == 0 {
		return checkResult{Status: statusFail, Msg: "pcscd lists no reader",
			Fix: "plug the reader in; `pcsc_scan` on the host shows what pcscd sees; USB readers need a driver (Debian: `sudo apt install libccid`)"}
	}
	var names []string
	for _, r := range rs {
		s := r.Name
		if r.Card {
			s += " (card inserted)"
		}
		names = append(names, s)
	}
	n := "reader"
	if len(rs) > 1 {
		n = "readers"
	}
	return checkResult{Status: statusOK, Msg: fmt.Sprintf("%d %s: %s", len(rs), n, strings.Join(names, "; "))}
}

// polkitRule is the fix for a refusing polkit: a rule for the user that
// runs cardshare, for both of pcscd's actions.
func polkitRule(user string) string {
	return fmt.Sprintf("allow your user in polkit: put `polkit.addRule(function(action, subject) { if ((action.id == \"org.debian.pcsc-lite.access_pcsc\" || action.id == \"org.debian.pcsc-lite.access_card\") && subject.user == \"%s\") return polkit.Result.YES; });` in /etc/polkit-1/rules.d/50-cardshare.rules, or run pcscd with --disable-polkit", user)
}

// polkitCheck: pcscd asks polkit about each connecting process when it was
// built with polkit and not started with --disable-polkit; the default
// policy of org.debian.pcsc-lite.access_pcsc allows only processes in an
// active local session, so a service or an SSH session is refused.
func (d *doctor) polkitCheck(ctx context.Context, probeErr error) checkResult {
	user := d.getenv("USER")
	if user == "" {
		user = "YOUR_USER"
	}
	ver, err := d.pcscdVersion(ctx)
	if err != nil {
		if errors.Is(probeErr, pcsc.ErrRefused) {
			return checkResult{Status: statusFail, Msg: "pcscd refused this process; polkit is the usual reason (no pcscd binary to check: " + err.Error() + ")", Fix: polkitRule(user)}
		}
		return checkResult{Status: statusSkip, Msg: "cannot tell: " + err.Error()}
	}
	withPolkit := false
	for l := range strings.SplitSeq(ver, "\n") {
		if rest, ok := strings.CutPrefix(l, "Enabled features:"); ok {
			withPolkit = strings.Contains(" "+rest+" ", " polkit ")
		}
	}
	if !withPolkit {
		if errors.Is(probeErr, pcsc.ErrRefused) {
			return checkResult{Status: statusWarn, Msg: "pcscd was built without polkit, yet it closed the connection",
				Fix: "read pcscd's log (`journalctl -u pcscd`)"}
		}
		return checkResult{Status: statusOK, Msg: "pcscd was built without polkit"}
	}
	for _, args := range d.pcscdArgs() {
		for _, a := range args[1:] {
			if a == "--disable-polkit" {
				return checkResult{Status: statusOK, Msg: "pcscd uses polkit but runs with --disable-polkit"}
			}
		}
	}
	if errors.Is(probeErr, pcsc.ErrRefused) {
		return checkResult{Status: statusFail, Msg: "pcscd checks polkit, and polkit refused this process", Fix: polkitRule(user)}
	}
	where := sessionKind(d.getenv)
	if where == "" {
		return checkResult{Status: statusWarn, Msg: "pcscd checks polkit: this active session may use it, but cardshare as a service (cardshare up, service install) or over SSH will be refused",
			Fix: polkitRule(user)}
	}
	return checkResult{Status: statusOK, Msg: "pcscd checks polkit, and polkit allows this process (" + where + ")"}
}

// sessionKind names the kind of process that polkit's default policy for
// pcscd does not count as an active local session, or "" for a session
// that it may count.
func sessionKind(getenv func(string) string) string {
	switch {
	case getenv("INVOCATION_ID") != "":
		return "a systemd service"
	case getenv("SSH_CONNECTION") != "":
		return "an SSH session"
	case getenv("XDG_SESSION_ID") == "":
		return "no login session"
	}
	return ""
}

// pcscdVersionOutput runs `pcscd -v`, which prints the release and the
// features pcscd was built with ("Enabled features: ... polkit ...").
func pcscdVersionOutput(ctx context.Context) (string, error) {
	p, err := exec.LookPath("pcscd")
	if err != nil {
		for _, c := range []string{"/usr/sbin/pcscd", "/usr/local/sbin/pcscd"} {
			if _, serr := os.Stat(c); serr == nil {
				p, err = c, nil
				break
			}
		}
	}
	if err != nil {
		return "", errors.New("no pcscd program found")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "-v").Output()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w", p, err)
	}
	return string(out), nil
}

// runningPCSCD returns the command lines of running pcscd processes, from
// /proc where there is one.
func runningPCSCD() [][]string {
	var out [][]string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) == "pcscd" {
			out = append(out, args)
		}
	}
	return out
}

// guestChecks runs the checks of one guest, skipping those that need an
// earlier one that failed.
func (d *doctor) guestChecks(ctx context.Context, g *globals, name string, daemon *pcsc.Daemon) {
	skipAll := func(why string, names ...string) {
		for _, n := range names {
			d.report(n, checkResult{Status: statusSkip, Msg: why})
		}
	}
	rest := []string{"forwarding", "guest socket", "libpcsclite", "environment"}

	t, src, err := vm.Resolve(ctx, name, d.o.sshConfig)
	if err != nil {
		d.report("ssh", checkResult{Status: statusFail, Msg: (&forward.GuestError{Guest: name, Err: err}).Error(), Fix: hint(err)})
		skipAll("needs SSH", rest...)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := sshdial.Dial(dctx, t, sshdial.DialOptions{AcceptNew: d.o.acceptNew, Prompt: terminalPrompt(), Logger: g.logger()})
	if err != nil {
		d.report("ssh", checkResult{Status: statusFail, Msg: err.Error(), Fix: hint(err)})
		skipAll("needs SSH", rest...)
		return
	}
	defer c.Close()
	via := ""
	if src.Kind != "destination" && src.Kind != "ssh_config" && src.Kind != "host name" {
		via = " (" + src.Kind + ")"
	}
	d.report("ssh", checkResult{Status: statusOK, Msg: fmt.Sprintf("logged in to %s as %s at %s%s", name, t.User, t.Addr(), via)})

	if err := guestsock.ProbeStreamLocal(dctx, c); err != nil {
		d.report("forwarding", checkResult{Status: statusFail, Msg: err.Error(), Fix: hint(err)})
	} else {
		d.report("forwarding", checkResult{Status: statusOK, Msg: "the guest's sshd forwards Unix sockets"})
	}

	gs, err := guestsock.Inspect(dctx, c, d.o.guestSocket, 2*time.Second)
	d.report("guest socket", socketCheck(gs, err))
	d.report("libpcsclite", versionCheck(gs, err, daemon))
	d.report("environment", envCheck(dctx, c, name, gs.Socket))
}

func socketCheck(gs guestsock.Found, err error) checkResult {
	if err != nil {
		return checkResult{Status: statusFail, Msg: err.Error(), Fix: hint(err)}
	}
	switch gs.State {
	case guestsock.Stale:
		return checkResult{Status: statusOK, Msg: gs.Socket + " (private directory); a stale socket from an earlier run is there, expose removes it"}
	case guestsock.InUse:
		return checkResult{Status: statusWarn, Msg: gs.Socket + " is served by a live listener, probably a running cardshare",
			Fix: "nothing, if that is your cardshare expose or up; otherwise stop it, or choose another path with --guest-socket"}
	case guestsock.Other:
		return checkResult{Status: statusFail, Msg: gs.Socket + " exists and is not a socket; expose will not replace it",
			Fix: "remove it in the guest, or choose another path with --guest-socket"}
	}
	return checkResult{Status: statusOK, Msg: gs.Socket + " (private directory, nothing there yet)"}
}

func versionCheck(gs guestsock.Found, inspectErr error, daemon *pcsc.Daemon) checkResult {
	install := "install pcsc-lite's client library in the guest (Debian/Ubuntu: libpcsclite1 and pcsc-tools; Fedora: pcsc-lite-libs; Alpine: pcsc-lite-libs; FreeBSD: pcsc-lite)"
	switch {
	case gs.Release == "" && inspectErr != nil && gs.OS == "":
		return checkResult{Status: statusSkip, Msg: "needs the guest socket check"}
	case gs.Release == "":
		return checkResult{Status: statusWarn, Msg: "no pcsc-lite client library found by the guest's package manager", Fix: install}
	case gs.Client == nil:
		return checkResult{Status: statusWarn, Msg: fmt.Sprintf("guest pcsc-lite release %q is not one cardshare knows", gs.Release),
			Fix: "nothing, if it is a recent release; the host log names both versions when pcscd rejects a guest program"}
	case daemon == nil:
		return checkResult{Status: statusSkip, Msg: fmt.Sprintf("guest has %s; needs the host pcscd to compare", gs.Client)}
	}
	gc := *gs.Client
	if !daemon.Serves(gc) {
		m := &pcsc.Mismatch{Client: gc.Version, Daemon: *daemon}
		return checkResult{Status: statusFail, Msg: fmt.Sprintf("guest %s and host pcscd %s cannot talk: pcscd rejects the guest's CMD_VERSION, programs see \"Service was stopped\"", gc, daemon),
			Fix: m.Hint()}
	}
	var why string
	switch {
	case gc.Version == daemon.Version:
		why = "both speak protocol " + gc.Version.String()
	case daemon.Accepts(gc.Version):
		why = "the host pcscd accepts older clients"
	default:
		why = "the guest library falls back to the host's protocol " + daemon.Version.String()
	}
	return checkResult{Status: statusOK, Msg: fmt.Sprintf("guest %s works with host pcscd %s: %s", gc, daemon, why)}
}

func envCheck(ctx context.Context, c *ssh.Client, name, socket string) checkResult {
	e, err := guestsetup.InspectEnv(ctx, c)
	if err != nil {
		return checkResult{Status: statusFail, Msg: err.Error(), Fix: hint(err)}
	}
	setup := fmt.Sprintf("`cardshare guest setup %s` (or expose --setup-guest)", name)
	if e.Profile == "" {
		return checkResult{Status: statusWarn, Msg: fmt.Sprintf("the login shell %s reads no profile that guest setup writes", e.Shell),
			Fix: fmt.Sprintf("set PCSCLITE_CSOCK_NAME=%s in that shell's own startup file", socket)}
	}
	switch {
	case e.ProfileSocket == "":
		return checkResult{Status: statusFail, Msg: fmt.Sprintf("~/%s does not set PCSCLITE_CSOCK_NAME for the login user", e.Profile), Fix: setup}
	case socket != "" && e.ProfileSocket != socket:
		return checkResult{Status: statusFail, Msg: fmt.Sprintf("~/%s points at %s, but expose listens on %s", e.Profile, e.ProfileSocket, socket),
			Fix: setup + ", with the --guest-socket that expose uses"}
	case e.Systemd && e.EnvDSocket == "":
		return checkResult{Status: statusWarn, Msg: fmt.Sprintf("~/%s is set up, but systemd user services and graphical sessions lack the variable", e.Profile), Fix: setup}
	case e.Systemd && e.EnvDSocket != e.ProfileSocket:
		return checkResult{Status: statusWarn, Msg: "~/.config/environment.d/cardshare.conf points at " + e.EnvDSocket, Fix: setup}
	}
	msg := fmt.Sprintf("~/%s sets PCSCLITE_CSOCK_NAME for login shells", e.Profile)
	if e.Systemd {
		msg += "; environment.d for the user's services and graphical sessions"
	}
	return checkResult{Status: statusOK, Msg: msg}
}
