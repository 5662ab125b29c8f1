package doctor

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// guestChecks runs the checks of one guest, skipping those that need an
// earlier one that failed.
func (d *doctor) guestChecks(ctx context.Context, name string, daemon *pcsc.Daemon) {
	skipAll := func(why string, names ...string) {
		for _, n := range names {
			d.report(n, Result{Status: Skip, Msg: why})
		}
	}
	rest := []string{"forwarding", "guest socket", "libpcsclite", "environment"}

	t, src, err := vm.Resolve(ctx, name, d.cfg.SSHConfig)
	if err != nil {
		d.report("ssh", Result{Status: Fail, Msg: name + ": " + err.Error(), Fix: d.hint(err)})
		skipAll("needs SSH", rest...)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := sshdial.Dial(dctx, t, d.cfg.Dial)
	if err != nil {
		d.report("ssh", Result{Status: Fail, Msg: err.Error(), Fix: d.hint(err)})
		skipAll("needs SSH", rest...)
		return
	}
	defer c.Close()
	via := ""
	if src.Kind != "destination" && src.Kind != "ssh_config" && src.Kind != "host name" {
		via = " (" + src.Kind + ")"
	}
	d.report("ssh", Result{Status: OK, Msg: fmt.Sprintf("logged in to %s as %s at %s%s", name, t.User, t.Addr(), via)})

	if err := guestsock.ProbeStreamLocal(dctx, c); err != nil {
		d.report("forwarding", Result{Status: Fail, Msg: err.Error(), Fix: d.hint(err)})
	} else {
		d.report("forwarding", Result{Status: OK, Msg: "the guest's sshd forwards Unix sockets"})
	}

	gs, err := guestsock.Inspect(dctx, c, d.cfg.GuestSocket, 2*time.Second)
	d.report("guest socket", d.socketCheck(gs, err))
	d.report("libpcsclite", versionCheck(gs, err, daemon))
	d.report("environment", d.envCheck(dctx, c, name, gs.Socket))
}

func (d *doctor) socketCheck(gs guestsock.Found, err error) Result {
	if err != nil {
		return Result{Status: Fail, Msg: err.Error(), Fix: d.hint(err)}
	}
	switch gs.State {
	case guestsock.Stale:
		return Result{Status: OK, Msg: gs.Socket + " (private directory); a stale socket from an earlier run is there, expose removes it"}
	case guestsock.InUse:
		return Result{Status: Warn, Msg: gs.Socket + " is served by a live listener, probably a running cardshare",
			Fix: "nothing, if that is your cardshare expose or up; otherwise stop it, or choose another path with --guest-socket"}
	case guestsock.Other:
		return Result{Status: Fail, Msg: gs.Socket + " exists and is not a socket; expose will not replace it",
			Fix: "remove it in the guest, or choose another path with --guest-socket"}
	}
	return Result{Status: OK, Msg: gs.Socket + " (private directory, nothing there yet)"}
}

func versionCheck(gs guestsock.Found, inspectErr error, daemon *pcsc.Daemon) Result {
	install := "install pcsc-lite's client library in the guest (Debian/Ubuntu: libpcsclite1 and pcsc-tools; Fedora: pcsc-lite-libs; Alpine: pcsc-lite-libs; FreeBSD: pcsc-lite)"
	switch {
	case gs.Release == "" && inspectErr != nil && gs.OS == "":
		return Result{Status: Skip, Msg: "needs the guest socket check"}
	case gs.Release == "":
		return Result{Status: Warn, Msg: "no pcsc-lite client library found by the guest's package manager", Fix: install}
	case gs.Client == nil:
		return Result{Status: Warn, Msg: fmt.Sprintf("guest pcsc-lite release %q is not one cardshare knows", gs.Release),
			Fix: "nothing, if it is a recent release; the host log names both versions when pcscd rejects a guest program"}
	case daemon == nil:
		return Result{Status: Skip, Msg: fmt.Sprintf("guest has %s; needs the host pcscd to compare", gs.Client)}
	}
	gc := *gs.Client
	if !daemon.Serves(gc) {
		m := &pcsc.Mismatch{Client: gc.Version, Daemon: *daemon}
		return Result{Status: Fail, Msg: fmt.Sprintf("guest %s and host pcscd %s cannot talk: pcscd rejects the guest's CMD_VERSION, programs see \"Service was stopped\"", gc, daemon),
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
	return Result{Status: OK, Msg: fmt.Sprintf("guest %s works with host pcscd %s: %s", gc, daemon, why)}
}

func (d *doctor) envCheck(ctx context.Context, c *ssh.Client, name, socket string) Result {
	e, err := guestsetup.InspectEnv(ctx, c)
	if err != nil {
		return Result{Status: Fail, Msg: err.Error(), Fix: d.hint(err)}
	}
	setup := fmt.Sprintf("`cardshare guest setup %s` (or expose --setup-guest)", name)
	if e.Profile == "" {
		return Result{Status: Warn, Msg: fmt.Sprintf("the login shell %s reads no profile that guest setup writes", e.Shell),
			Fix: fmt.Sprintf("set PCSCLITE_CSOCK_NAME=%s in that shell's own startup file", socket)}
	}
	switch {
	case e.ProfileSocket == "":
		return Result{Status: Fail, Msg: fmt.Sprintf("~/%s does not set PCSCLITE_CSOCK_NAME for the login user", e.Profile), Fix: setup}
	case socket != "" && e.ProfileSocket != socket:
		return Result{Status: Fail, Msg: fmt.Sprintf("~/%s points at %s, but expose listens on %s", e.Profile, e.ProfileSocket, socket),
			Fix: setup + ", with the --guest-socket that expose uses"}
	case e.Systemd && e.EnvDSocket == "":
		return Result{Status: Warn, Msg: fmt.Sprintf("~/%s is set up, but systemd user services and graphical sessions lack the variable", e.Profile), Fix: setup}
	case e.Systemd && e.EnvDSocket != e.ProfileSocket:
		return Result{Status: Warn, Msg: "~/.config/environment.d/cardshare.conf points at " + e.EnvDSocket, Fix: setup}
	}
	msg := fmt.Sprintf("~/%s sets PCSCLITE_CSOCK_NAME for login shells", e.Profile)
	if e.Systemd {
		msg += "; environment.d for the user's services and graphical sessions"
	}
	return Result{Status: OK, Msg: msg}
}
