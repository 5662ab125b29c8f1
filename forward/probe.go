package forward

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// Checks of a guest for `cardshare doctor`, over an existing SSH connection,
// without forwarding.

// ProbeStreamLocal asks the guest's sshd for a Unix socket forward on a
// path in a new private directory under /tmp, closes it and removes the
// directory. It returns an error wrapping ErrForwardRefused when sshd
// refuses (AllowStreamLocalForwarding no, DisableForwarding yes, or a
// restriction on the key).
func ProbeStreamLocal(ctx context.Context, c *ssh.Client) error {
	out, err := guestsock.Run(ctx, c, `umask 077; d=$(mktemp -d /tmp/cardshare-doctor.XXXXXX) && echo "dir=$d"`)
	if err != nil {
		return fmt.Errorf("make a directory in the guest: %w", err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "dir=")
	if !ok || !strings.HasPrefix(dir, "/tmp/cardshare-doctor.") || strings.ContainsAny(dir, "\n\x00") {
		return fmt.Errorf("mktemp in the guest printed %q", guestsock.Truncate(out, 100))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		guestsock.Run(cctx, c, `rm -rf -- "$d"`, "d", dir)
	}()
	ln, err := c.ListenUnix(dir + "/probe.sock")
	if err != nil {
		return fmt.Errorf("%w: listen on %s/probe.sock: %w", ErrForwardRefused, dir, err)
	}
	return ln.Close()
}
