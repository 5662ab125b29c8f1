package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
)

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is one check's outcome, what was found, and how to fix it.
type Result struct {
	Status Status
	Msg    string
	Fix    string
}

// Config says what to check and where the results go.
type Config struct {
	// PCSCDSocket is the host pcscd socket. Empty means pcsc.DefaultSocket.
	PCSCDSocket string
	// Backend is --backend (hostpcsc.Backends; "" means auto): the
	// "backend" line says what it picks and why, and the native backend
	// is checked in place of the pcscd socket.
	Backend string
	// SSHConfig is the ssh_config file for the guest ("" for ssh's own).
	SSHConfig string
	// GuestSocket is the guest socket path as given to expose ("" for its
	// default).
	GuestSocket string
	// Dial holds the SSH options for the guest: accept-new, passphrase
	// prompt, logger.
	Dial sshdial.DialOptions
	// Hint says how to fix an error that a check ran into; nil gives none.
	Hint func(error) string
	// Report is called with each check's result, in order, as soon as the
	// check has run. It must be set.
	Report func(name string, r Result)
	// Host, when set, replaces the host pcscd, readers and polkit checks:
	// a macOS or Windows host has no pcscd socket, and cmd/cardshare gives
	// internal/hostcheck's checks of its PC/SC service, readers, ssh and
	// agent here. The guest checks then have no host pcscd to compare the
	// guest's library with (the native backend answers any version).
	Host func(ctx context.Context) []HostCheck
}

// HostCheck is the result of one check of the host, with its name.
type HostCheck struct {
	Name string
	Result
}

// Summary counts the checks that failed and warned.
type Summary struct {
	Failed, Warned int
}

// doctor runs the checks. The fields other than cfg let tests replace what
// doctor learns about the host.
type doctor struct {
	cfg *Config

	// pcscdVersion returns the output of `pcscd -v`.
	pcscdVersion func(context.Context) (string, error)
	// pcscdArgs returns the command lines of the running pcscd processes.
	pcscdArgs func() [][]string
	getenv    func(string) string

	sum Summary
}

// Run checks the host and, when guest is not "", the guest (an ssh_config
// alias, [user@]host[:port] or a VM name), reporting each check through
// cfg.Report. It changes nothing, except that it creates the guest
// socket's private directory as expose would.
func Run(ctx context.Context, cfg *Config, guest string) Summary {
	c := *cfg
	if c.PCSCDSocket == "" {
		c.PCSCDSocket = pcsc.DefaultSocket
	}
	if c.Dial.Logger == nil {
		c.Dial.Logger = slog.New(slog.DiscardHandler)
	}
	d := &doctor{cfg: &c, pcscdVersion: pcscdVersionOutput, pcscdArgs: runningPCSCD, getenv: os.Getenv}
	return d.run(ctx, guest)
}

func (d *doctor) hint(err error) string {
	if d.cfg.Hint == nil {
		return ""
	}
	return d.cfg.Hint(err)
}

func (d *doctor) report(name string, r Result) {
	d.cfg.Report(name, r)
	switch r.Status {
	case Fail:
		d.sum.Failed++
	case Warn:
		d.sum.Warned++
	}
}

func (d *doctor) run(ctx context.Context, guest string) Summary {
	src, daemon := d.backendChecks(ctx)
	if src != nil {
		defer hostpcsc.Close(src)
	}
	if d.cfg.Host != nil {
		// macOS and Windows: the checks of what fails there (internal/hostcheck).
		for _, c := range d.cfg.Host(ctx) {
			d.report(c.Name, c.Result)
		}
		if guest != "" {
			var dp *pcsc.Daemon
			if src != nil {
				dp = &daemon
			}
			d.guestChecks(ctx, guest, dp)
		}
		return d.sum
	}
	if src != nil {
		d.report("polkit", d.polkitCheck(ctx, nil))
		if guest != "" {
			d.guestChecks(ctx, guest, &daemon)
		}
		return d.sum
	}
	socket := d.cfg.PCSCDSocket
	daemon, probeErr := pcsc.Probe(ctx, socket)
	d.report("host pcscd", d.hostCheck(socket, daemon, probeErr))
	if probeErr != nil {
		d.report("readers", Result{Status: Skip, Msg: "needs the host pcscd"})
	} else {
		rs, err := listReaders(ctx, socket, daemon)
		d.report("readers", readersCheck(rs, err))
	}
	d.report("polkit", d.polkitCheck(ctx, probeErr))

	if guest != "" {
		var dp *pcsc.Daemon
		if probeErr == nil {
			dp = &daemon
		}
		d.guestChecks(ctx, guest, dp)
	}
	return d.sum
}

func (d *doctor) hostCheck(socket string, daemon pcsc.Daemon, err error) Result {
	switch {
	case err == nil:
		return Result{Status: OK, Msg: fmt.Sprintf("%s answers: %s", socket, daemon)}
	case errors.Is(err, pcsc.ErrNoDaemon):
		return Result{Status: Fail, Msg: fmt.Sprintf("nothing listens on %s", socket),
			Fix: "install and start pcscd (`sudo apt install pcscd`, `sudo systemctl enable --now pcscd.socket`), or point --pcscd-socket at its socket"}
	case errors.Is(err, pcsc.ErrRefused):
		return Result{Status: Fail, Msg: fmt.Sprintf("%s closed the connection without answering", socket),
			Fix: "that is how pcscd's polkit check refuses: see the polkit line below"}
	}
	return Result{Status: Fail, Msg: err.Error(), Fix: d.hint(err)}
}

func readersCheck(rs []reader, err error) Result {
	if err != nil {
		return Result{Status: Fail, Msg: "could not list the readers: " + err.Error(),
			Fix: "check the host with `pcsc_scan`; a pcscd built with more than 16 reader slots (Fedora) is not supported by this check"}
	}
	if len(rs) == 0 {
		return Result{Status: Fail, Msg: "pcscd lists no reader",
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
	return Result{Status: OK, Msg: fmt.Sprintf("%d %s: %s", len(rs), n, strings.Join(names, "; "))}
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
func (d *doctor) polkitCheck(ctx context.Context, probeErr error) Result {
	user := d.getenv("USER")
	if user == "" {
		user = "YOUR_USER"
	}
	ver, err := d.pcscdVersion(ctx)
	if err != nil {
		if errors.Is(probeErr, pcsc.ErrRefused) {
			return Result{Status: Fail, Msg: "pcscd refused this process; polkit is the usual reason (no pcscd binary to check: " + err.Error() + ")", Fix: polkitRule(user)}
		}
		return Result{Status: Skip, Msg: "cannot tell: " + err.Error()}
	}
	withPolkit := false
	for l := range strings.SplitSeq(ver, "\n") {
		if rest, ok := strings.CutPrefix(l, "Enabled features:"); ok {
			withPolkit = strings.Contains(" "+rest+" ", " polkit ")
		}
	}
	if !withPolkit {
		if errors.Is(probeErr, pcsc.ErrRefused) {
			return Result{Status: Warn, Msg: "pcscd was built without polkit, yet it closed the connection",
				Fix: "read pcscd's log (`journalctl -u pcscd`)"}
		}
		return Result{Status: OK, Msg: "pcscd was built without polkit"}
	}
	for _, args := range d.pcscdArgs() {
		for _, a := range args[1:] {
			if a == "--disable-polkit" {
				return Result{Status: OK, Msg: "pcscd uses polkit but runs with --disable-polkit"}
			}
		}
	}
	if errors.Is(probeErr, pcsc.ErrRefused) {
		return Result{Status: Fail, Msg: "pcscd checks polkit, and polkit refused this process", Fix: polkitRule(user)}
	}
	where := sessionKind(d.getenv)
	if where == "" {
		return Result{Status: Warn, Msg: "pcscd checks polkit: this active session may use it, but cardshare as a service (cardshare up, service install) or over SSH will be refused",
			Fix: polkitRule(user)}
	}
	return Result{Status: OK, Msg: "pcscd checks polkit, and polkit allows this process (" + where + ")"}
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
