package forward

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// listen prepares the guest socket path and opens the forward.
func (f *Forwarder) listen(ctx context.Context, client *ssh.Client, keeper *guestsock.Keeper) (net.Listener, guestsock.Info, error) {
	info, err := keeper.Prepare(ctx, f.guest.Socket)
	if err != nil {
		return nil, info, fmt.Errorf("prepare guest socket: %w", err)
	}
	switch info.Exists {
	case "other":
		return nil, info, fmt.Errorf("%s exists in the guest and is not a socket; refusing to replace it", info.Socket)
	case "socket":
		// A silent listener is left alone (guestsock.ErrSilent), unless it
		// holds the socket of this Forwarder's own lost connection: then
		// it is that dead forward, whose client will never answer.
		ours := f.held == info.Socket
		removed, err := guestsock.ClearStale(ctx, client, info.Socket, f.cfg.StaleProbe, ours)
		if err != nil {
			return nil, info, err
		}
		if removed {
			f.log.Info("removed stale guest socket", "guest_socket", info.Socket)
		}
	}
	ln, err := guestsock.Listen(client, info.Socket)
	return ln, info, err
}

// probe reads the guest's OS and pcsc-lite release into info through the
// keeper session, after the socket is listening: the package manager's
// start-up (dpkg-query reads its whole database) is off the path to the
// guest socket. A guest whose release cannot be read is served all the
// same, as one without a package manager is.
func (f *Forwarder) probe(ctx context.Context, keeper *guestsock.Keeper, info *guestsock.Info) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	g, err := keeper.Probe(ctx)
	if err != nil {
		f.log.Debug("could not read the guest's pcsc-lite release", "err", err)
	}
	info.OS, info.Release = g.OS, g.Release
}

// probeWait bounds how long a guest whose socket is there waits for the
// others to start before it reads its release (StartGate.quiet), and so
// how late its "forward up" may come.
const probeWait = 10 * time.Second

// probeTimeout bounds Keeper.Probe; the keeper session is closed when it
// runs out (the socket is then removed through a new session on stop).
const probeTimeout = 15 * time.Second

// cleanup removes the guest socket on the way out: sshd does not, and a
// leftover socket would make the guest's clients fail instead of reporting
// that no service is there.
//
// It goes through the keeper session, which is open already: a new
// session per guest, on an sshd that a hundred guests stop at once, often
// failed ("remote command exited without exit status"). Only when the
// keeper fails does it try a new session.
func (f *Forwarder) cleanup(client *ssh.Client, keeper *guestsock.Keeper, sock string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	err := keeper.Remove(ctx, sock)
	if err != nil && ctx.Err() == nil {
		f.log.Debug("could not remove guest socket through the keeper session; trying a new session", "guest_socket", sock, "err", err)
		err = guestsock.Remove(ctx, client, sock)
	}
	if err != nil {
		f.log.Warn("could not remove guest socket", "guest_socket", sock, "err", err)
		return
	}
	f.log.Info("removed guest socket", "guest_socket", sock)
}

// watchSocket checks every interval that the guest socket is still at
// sock, and reports on the returned channel when it is not. It stops when
// ctx is done. A check that fails (the connection is going away) is left to
// the keepalive to report.
func watchSocket(ctx context.Context, c *ssh.Client, sock string, interval time.Duration) <-chan error {
	gone := make(chan error, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if missing, err := guestsock.Missing(ctx, c, sock); err == nil && missing {
				gone <- fmt.Errorf("%w: %s", guestsock.ErrRemoved, sock)
				return
			}
		}
	}()
	return gone
}

// keepalive sends keepalive@openssh.com requests every interval and
// reports on the returned channel, after closing the client, when one is
// not answered within timeout or the connection ends. OpenSSH answers the
// unknown request with a failure, which proves the peer alive all the same.
func keepalive(c *ssh.Client, interval, timeout time.Duration) <-chan error {
	lost := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		err := c.Wait()
		select {
		case lost <- fmt.Errorf("guest connection closed: %w", err):
		default: // the keepalive reported first
		}
		close(done)
	}()
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			replied := make(chan error, 1)
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				replied <- err
			}()
			select {
			case <-done:
				return
			case <-replied:
			case <-time.After(timeout):
				select {
				case lost <- fmt.Errorf("guest did not answer a keepalive within %v", timeout):
				default:
				}
				c.Close()
				return
			}
		}
	}()
	return lost
}
