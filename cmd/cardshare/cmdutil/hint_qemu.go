package cmdutil

import (
	"errors"

	"github.com/cardshare/cardshare/internal/ccidconf"
	"github.com/cardshare/cardshare/internal/scard"
)

// qemuHint is Hint for the errors of `cardshare qemu` and of qemu-ccid
// guests. A chardev peer that is not QEMU (ccid.ErrNotQEMU) gets none: its
// error is one line that says it all.
func qemuHint(err error) string {
	var le *scard.LoadError
	switch {
	case errors.As(err, &le):
		return le.Hint
	case errors.Is(err, ccidconf.ErrNoSmartcard):
		return "`cardshare qemu snippet --domain NAME` prints that XML (--readers N for more readers); or give the chardev with --chardev"
	case errors.Is(err, ccidconf.ErrNoDomain):
		return "`virsh list --all` (and `virsh -c qemu:///system list --all`) lists the domains; for QEMU without libvirt give its chardev (--chardev unix:PATH or tcp:HOST:PORT, or chardev: under ccid: in the config file)"
	}
	return ""
}
