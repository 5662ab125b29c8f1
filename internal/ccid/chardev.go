package ccid

import (
	"context"
	"errors"
	"fmt"

	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/backoff"
)

// Endpoint is one QEMU chardev of a ccid-card-passthru device: a Unix or
// TCP socket that QEMU listens on (server=on; the bridge dials it) or that
// the bridge listens on for QEMU to connect (Listen).
type Endpoint struct {
	Network string // "unix" or "tcp"
	Address string // a socket path, or host:port
	Listen  bool
}

// ParseEndpoint reads "unix:PATH" or "tcp:HOST:PORT"; a bare path is a
// Unix socket.
func ParseEndpoint(s string, listen bool) (Endpoint, error) {
	network, addr, ok := strings.Cut(s, ":")
	switch {
	case !ok && s != "":
		network, addr = "unix", s
	case network == "unix" || network == "tcp":
	default:
		return Endpoint{}, fmt.Errorf("ccid: chardev %q: want unix:PATH or tcp:HOST:PORT", s)
	}
	if addr == "" {
		return Endpoint{}, fmt.Errorf("ccid: chardev %q: empty address", s)
	}
	e := Endpoint{Network: network, Address: addr, Listen: listen}
	if network == "tcp" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return Endpoint{}, fmt.Errorf("ccid: chardev %q: %w", s, err)
		}
		// The chardev carries APDUs and PINs unauthenticated: listen on
		// loopback only.
		if listen && !isLoopback(host) {
			return Endpoint{}, fmt.Errorf("ccid: chardev %q: listen on a loopback address only (the chardev carries PINs unauthenticated)", s)
		}
	}
	return e, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (e Endpoint) String() string {
	s := e.Network + ":" + e.Address
	if e.Listen {
		s += " (listening)"
	}
	return s
}

// connector yields chardev connections: dialing with backoff, or accepting
// on a listener that lives as long as the connector.
type connector struct {
	ep    Endpoint
	ln    net.Listener
	retry backoff.Backoff
}

func newConnector(ep Endpoint, retry backoff.Backoff) (*connector, error) {
	c := &connector{ep: ep, retry: retry}
	if !ep.Listen {
		return c, nil
	}
	if ep.Network == "unix" {
		// A stale socket of an earlier run: remove it if nobody answers.
		if fi, err := os.Lstat(ep.Address); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("ccid: listen on %s: the path exists and is not a socket", ep.Address)
			}
			if conn, err := net.DialTimeout("unix", ep.Address, time.Second); err == nil {
				conn.Close()
				return nil, fmt.Errorf("ccid: listen on %s: %w", ep.Address, errInUse)
			}
			os.Remove(ep.Address)
		}
	}
	ln, err := listen(ep)
	if err != nil {
		return nil, fmt.Errorf("ccid: listen on %s: %w", ep, err)
	}
	c.ln = ln
	return c, nil
}

var errInUse = errors.New("socket in use by another process")

// next returns the next connection, waiting as long as it takes; retries
// counts failed dials in a row, for the caller's logs.
func (c *connector) next(ctx context.Context, onRetry func(err error, wait time.Duration)) (net.Conn, error) {
	if c.ln != nil {
		stop := context.AfterFunc(ctx, func() { c.ln.Close() })
		defer stop()
		conn, err := c.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("ccid: accept on %s: %w", c.ep, err)
		}
		tune(conn)
		return conn, nil
	}
	c.retry.Reset()
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, c.ep.Network, c.ep.Address)
		if err == nil {
			tune(conn)
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := c.retry.Next()
		if onRetry != nil {
			onRetry(err, wait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *connector) close() {
	if c.ln != nil {
		c.ln.Close()
		if c.ep.Network == "unix" {
			os.Remove(c.ep.Address)
		}
	}
}

// listen opens a listening chardev. A Unix socket is made mode 0600 in a
// fresh 0700 directory beside its path and then renamed into place, so that
// no other user can connect to it at any moment, whatever the directory it
// lives in: the chardev carries PINs unauthenticated. QEMU must therefore
// run as the same user (or root); a QEMU of another user (libvirt's system
// instance) should listen itself (source mode='bind') instead.
func listen(ep Endpoint) (net.Listener, error) {
	if ep.Network != "unix" {
		return net.Listen(ep.Network, ep.Address)
	}
	dir, err := os.MkdirTemp(filepath.Dir(ep.Address), ".cardshare-ccid-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, ep.Address); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// tune sets TCP_NODELAY: each VSCard message is one write, and waiting for
// the next one (Nagle) stalls each APDU by a delayed ACK, ~40 ms (QEMU's
// side needs nodelay=on for the same reason).
func tune(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
