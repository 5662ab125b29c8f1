package cmdutil

import (
	"errors"
	"io/fs"
	"net"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
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
	case errors.Is(err, control.ErrVersion):
		return "use the same cardshare binary for `up`, `relay serve` and `status`"
	case errors.Is(err, hostpcsc.ErrNoNative):
		return "use --backend socket (or host.backend: socket in the config file), with pcscd running"
	case errors.Is(err, hostpcsc.ErrUnknownBackend):
		return "use --backend auto, socket or native"
	case errors.Is(err, pcsc.ErrNoDaemon):
		return "is pcscd running? start it with `sudo systemctl start pcscd.socket`, or point --pcscd-socket at its socket"
	case errors.Is(err, pcsc.ErrRefused):
		return "pcscd closed the connection at once, which is what polkit's refusal looks like: allow org.debian.pcsc-lite.access_pcsc for your user, or run pcscd with --disable-polkit"
	case errors.As(err, &m):
		return m.Hint()
	case errors.Is(err, guestsetup.ErrSudo):
		return "let the guest user run sudo without a password (`sudo visudo` in the guest: `USER ALL=(root) NOPASSWD: ALL`), or run this as root@GUEST, or do the --system steps of examples/virtualbox/README.md by hand"
	case errors.Is(err, guestsetup.ErrSetup):
		return "nothing was changed when setup stopped before its first write; fix the file named above in the guest and run again"
	case errors.Is(err, vm.ErrAmbiguous):
		return "name the VM by its address instead (`cardshare resolve NAME` shows each), or give it an ssh_config Host alias, which comes first"
	case errors.Is(err, vm.ErrNoAddress):
		return "`cardshare resolve NAME` shows what each VM manager reported"
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
