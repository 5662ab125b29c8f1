package cmdutil

import (
	"errors"
	"io/fs"
	"net"
	"runtime"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/service"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/internal/vm"
)

// Hint says what the user can do about err, or "" when nothing useful is
// known. Hints are matched on error values, never on message text.
func Hint(err error) string {
	if h, ok := hintOf(err); ok {
		return h
	}
	if h := qemuHint(err); h != "" {
		return h
	}
	var (
		m  *pcsc.Mismatch
		ne net.Error
		oe *net.OpError
		ce *config.Error
		he *hintedError
		se *service.CommandError
		ud *pcsc.UnknownDaemonError
		ae *hostpcsc.AutoError
		le *scard.LoadError
	)
	switch {
	case errors.As(err, &ce):
		return ce.Hint
	case errors.As(err, &he):
		return he.Hint()
	case errors.Is(err, control.ErrNotRunning):
		return "start it with `cardshare up` (or `systemctl --user start cardshare` for the service) or `cardshare relay serve`; one started with its own --control-socket needs the same flag here"
	case errors.Is(err, control.ErrAlreadyRunning):
		return "stop it first (`systemctl --user stop cardshare`, or Ctrl-C in its terminal), or give this one its own --control-socket (and `cardshare status` the same flag)"
	case errors.Is(err, control.ErrPathTooLong):
		return "choose a shorter path with --control-socket"
	case errors.Is(err, control.ErrNotOwner):
		return "remove it, or choose another path with --control-socket"
	case errors.Is(err, control.ErrUnavailable):
		return "Windows has AF_UNIX from Windows 10 version 1803 on; Wine has none. `up` and `relay serve` run without a control socket there: their log shows each guest's state"
	case errors.Is(err, control.ErrVersion):
		return "use the same cardshare binary for `up`, `relay serve` and `status`"
	case errors.As(err, &ae):
		return autoHint(ae)
	case errors.As(err, &le), errors.Is(err, scard.NoService), errors.Is(err, scard.ServiceStopped):
		return nativeHint(err)
	case errors.Is(err, hostpcsc.ErrUnknownBackend):
		return "use --backend auto, socket or native"
	case errors.Is(err, pcsc.ErrNoSocketDir):
		return "check the path given with --pcscd-socket, PCSCLITE_CSOCK_NAME or host.pcscd_socket (pcscd's own is /run/pcscd/pcscd.comm); if pcscd is not installed: `sudo apt install pcscd`"
	case errors.Is(err, sshdial.ErrConfigFile):
		return "name an ssh_config file that exists with -F (or host.ssh_config), or leave it out to use ssh's own (~/.ssh/config when there is one)"
	case errors.Is(err, pcsc.ErrNoDaemon):
		return "is pcscd running? start it with `sudo systemctl start pcscd.socket`, or point --pcscd-socket at its socket"
	case errors.Is(err, pcsc.ErrRefused):
		return "pcscd closed the connection at once, which is what polkit's refusal looks like: allow org.debian.pcsc-lite.access_pcsc for your user, or run pcscd with --disable-polkit"
	case errors.As(err, &m):
		return m.Hint()
	case errors.As(err, &ud):
		return ud.Hint()
	case errors.Is(err, unixsock.ErrOpenDir):
		return "choose a path in a directory only you can enter (the default is one), or make that one private yourself with `chmod 700`; cardshare does not change the mode of a directory you chose"
	case errors.Is(err, guestsetup.ErrSudo):
		return "let the guest user run sudo without a password (`sudo visudo` in the guest: `USER ALL=(root) NOPASSWD: ALL`), or run this as root@GUEST, or do the --system steps of examples/virtualbox/README.md by hand"
	case errors.Is(err, guestsetup.ErrSetup):
		return "nothing was changed when setup stopped before its first write; fix the file named above in the guest and run again"
	case errors.Is(err, vm.ErrAmbiguous):
		return "name the VM by its address instead (`cardshare resolve NAME` shows each), or give it an ssh_config Host alias, which comes first"
	case errors.Is(err, vm.ErrNoAddress):
		return "`cardshare resolve NAME` shows what each VM manager reported"
	case errors.As(err, &se):
		return serviceHint(runtime.GOOS)
	case errors.Is(err, ErrChecksFailed):
		return "each FAIL line above says how to fix it"
	case errors.Is(err, sshdial.ErrHostUnknown):
		return "check the fingerprint with the guest's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, then run again with --accept-new (or `ssh` to the guest once) to record it"
	case errors.Is(err, sshdial.ErrHostKeyChanged):
		return "if the guest was reinstalled, remove the old key with `ssh-keygen -R HOST` (use the name shown above) and connect again; otherwise do not connect"
	case errors.Is(err, sshdial.ErrAuth):
		return "make sure `ssh GUEST` logs in without a password: add your key to ssh-agent (`ssh-add`) or set IdentityFile for the guest in ~/.ssh/config"
	case errors.Is(err, guestsock.ErrForwardRefused):
		return "the guest's sshd must allow Unix socket forwarding: `AllowStreamLocalForwarding yes` (the default) and no `DisableForwarding yes` in its /etc/ssh/sshd_config"
	case errors.Is(err, unixsock.ErrSocketInUse):
		return "another program (another cardshare?) serves that path in the guest; stop it, or choose another path with --guest-socket"
	case errors.Is(err, guestsock.ErrSilent):
		return "a listener that does not answer holds that path in the guest: a program that is stuck, or the forward of an SSH connection that died (the guest's sshd drops those sooner with ClientAliveInterval 15 in its sshd_config); cardshare retries and never removes a socket someone listens on"
	case errors.Is(err, guestsock.ErrUnsafeDir):
		return "other guest users could create the socket first and read your PIN: choose a directory only you can write to, or leave --guest-socket unset for a private default"
	case errors.Is(err, sshdial.ErrProxyCommand):
		return "cardshare supports ProxyJump but not ProxyCommand; express the hop as ProxyJump in ssh_config"
	case errors.Is(err, fs.ErrPermission):
		return "this user may not open that file or socket; check its owner and mode"
	case errors.As(err, &oe) && oe.Op == "dial", errors.As(err, &ne) && ne.Timeout():
		return "is the guest running, and its sshd reachable? `ssh -v GUEST` shows the details"
	}
	return ""
}

// serviceHint says where to look when the service manager refused a
// command of `service install` or `uninstall`.
func serviceHint(goos string) string {
	switch goos {
	case "darwin":
		return "see `launchctl print gui/$(id -u)/" + service.LaunchdLabel + "` and ~/Library/Logs/cardshare/up.log; over SSH, run it in a Terminal of the logged-in user (launchd's GUI session)"
	case "windows":
		return "see `schtasks /Query /TN " + service.WindowsTask + " /V /FO LIST` and %LOCALAPPDATA%\\cardshare\\up.log"
	}
	return "see `systemctl --user status cardshare` and `journalctl --user -u cardshare`"
}

// nativeHint says what to do when the native backend fails: install the
// library it loads, or start the service behind it, per system.
func nativeHint(err error) string {
	var le *scard.LoadError
	if errors.As(err, &le) {
		return le.Hint
	}
	switch runtime.GOOS {
	case "windows":
		return "the Smart Card service (SCardSvr) runs only while a reader is attached: attach a reader once and run again (`sc query SCardSvr` shows it)"
	case "darwin":
		return "macOS's PC/SC (CryptoTokenKit) answers once a reader is attached: attach one and run again"
	}
	return "libpcsclite reaches pcscd at PCSCLITE_CSOCK_NAME or its built-in path: is pcscd running? `sudo systemctl start pcscd.socket`"
}

// autoHint names both backends that --backend auto tried.
func autoHint(e *hostpcsc.AutoError) string {
	native := "the native backend (--backend native) did not answer either: " + nativeHint(e.Native)
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return native
	}
	return "is pcscd running? start it with `sudo systemctl start pcscd.socket`, or point --pcscd-socket at its socket; " + native
}

// hintedError carries a hint for the user beside an error, for errors made
// in cmd that no package sentinel describes.
type hintedError struct {
	err  error
	hint string
}

// WithHint attaches hint to err, for errors that no sentinel describes.
func WithHint(err error, hint string) error { return &hintedError{err, hint} }

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }
func (e *hintedError) Hint() string  { return e.hint }

// ErrChecksFailed ends doctor with exit status 1; the report says why.
var ErrChecksFailed = errors.New("doctor: checks failed")
