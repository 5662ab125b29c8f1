package guestsock

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/unixsock"
)

// Keeper is a session kept open for the life of a forward: a POSIX shell
// that waits on its standard input. It does two jobs. A session makes sshd
// turn on TCP_NODELAY for the connection (packet_set_interactive in
// OpenSSH), which a bare forward never does: without it, round trips stall
// 40 ms on Nagle and delayed ACKs. And the guest socket is removed through
// it on the way out (Remove): opening a new session then fails on an sshd
// that is loaded or already tearing the connection down, as when `cardshare
// up` stops a hundred guests at once.
type Keeper struct {
	s    *ssh.Session
	in   io.WriteCloser
	used bool
}

// StartKeeper starts the keeper session on c.
func StartKeeper(c *ssh.Client) (*Keeper, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("start keeper session: %w", err)
	}
	in, err := s.StdinPipe()
	if err == nil {
		// The script travels on standard input, as with Run; the shell
		// reads and runs it only when Remove sends it.
		err = s.Start("/bin/sh -s")
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start keeper session: %w", err)
	}
	return &Keeper{s: s, in: in}, nil
}

// Remove removes the socket at sock in the guest, if a socket is there,
// through the keeper's shell, which then exits. It waits for the shell's
// exit status until ctx is done. The keeper serves one Remove.
func (k *Keeper) Remove(ctx context.Context, sock string) error {
	if k.used {
		return fmt.Errorf("remove %s: keeper already used", sock)
	}
	k.used = true
	stop := context.AfterFunc(ctx, func() { k.s.Close() })
	defer stop()
	script := "sock=" + Quote(sock) + "\nmaxdir=" + strconv.Itoa(unixsock.MaxDir) + "\n" + removeScript
	if _, err := io.Copy(k.in, strings.NewReader(script)); err != nil {
		return fmt.Errorf("remove %s: %w", sock, err)
	}
	k.in.Close()
	if err := k.s.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("remove %s: %w", sock, ctx.Err())
		}
		return fmt.Errorf("remove %s: %w", sock, err)
	}
	return nil
}

// Close ends the keeper session.
func (k *Keeper) Close() error { return k.s.Close() }
