package guestsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrForwardRefused means the guest's sshd refused the Unix socket forward
// (AllowStreamLocalForwarding no, DisableForwarding yes, or a restriction
// on the key).
var ErrForwardRefused = errors.New("guest sshd refused the socket forward")

// Listen asks the guest's sshd to listen on sock and forward its
// connections (streamlocal-forward@openssh.com).
func Listen(c *ssh.Client, sock string) (net.Listener, error) {
	ln, err := c.ListenUnix(sock)
	if err != nil {
		return nil, fmt.Errorf("%w: listen on %s: %w", ErrForwardRefused, sock, err)
	}
	return ln, nil
}

// ProbeStreamLocal asks the guest's sshd for a Unix socket forward on a
// path in a new private directory under /tmp, closes it and removes the
// directory. It returns an error wrapping ErrForwardRefused when sshd
// refuses (AllowStreamLocalForwarding no, DisableForwarding yes, or a
// restriction on the key).
func ProbeStreamLocal(ctx context.Context, c *ssh.Client) error {
	out, err := Run(ctx, c, `umask 077; d=$(mktemp -d /tmp/cardshare-doctor.XXXXXX) && printf '%s\n' "dir=$d"`)
	if err != nil {
		return fmt.Errorf("make a directory in the guest: %w", err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "dir=")
	if !ok || !strings.HasPrefix(dir, "/tmp/cardshare-doctor.") || strings.ContainsAny(dir, "\n\x00") {
		return fmt.Errorf("mktemp in the guest printed %q", Truncate(out, 100))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		Run(cctx, c, `rm -rf -- "$d"`, "d", dir)
	}()
	ln, err := Listen(c, dir+"/probe.sock")
	if err != nil {
		return err
	}
	return ln.Close()
}
