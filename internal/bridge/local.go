package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Local is a host side that is itself the daemon end of pcsc-lite's
// protocol, in this process: internal/nativepcsc's Source. Its Dial gives
// a connection to it through a socket pair; ServeOpened takes the guest's
// connection itself instead, which saves a hop (two system calls and a
// wake-up per message each way) on every connection that needs no
// protocol stage.
//
// A Local answers a CMD_VERSION that Config.Daemon accepts with the
// guest's own version, as a daemon of that version would (nativepcsc
// answers 4.4, 4.5 and 4.6 so), and logs its connections' failures itself.
type Local interface {
	// ServeOpened serves guest, whose opening message (CMD_VERSION or
	// SCARD_CANCEL) Serve has read and checked, until the guest leaves or
	// ctx is done, and closes guest. opening is that message, whole.
	ServeOpened(ctx context.Context, guest net.Conn, opening []byte) error
}

// local reports whether c.Local serves a connection that opened with o
// itself: one that the byte relay would serve (no policy, no audit log,
// no translation, reader arrays of one size) and whose version the daemon
// accepts as it is. Every other connection dials, so that the version
// check, the translation and the protocol-aware stage stay the same for
// every host side.
func (c *Config) local(o pcsc.Opening) bool {
	if c.Local == nil || c.proxyAll() {
		return false
	}
	if o.Command != pcsc.CmdVersion {
		return true // SCARD_CANCEL, relayed as it is
	}
	v := o.Version
	if !v.Known() || !c.Daemon.Accepts(v) {
		return false
	}
	_, staged := c.stage(handshake{guest: v, host: v, daemon: v})
	return !staged
}

// serveLocal hands a connection that open accepted for c.Local to it.
// Its bytes are counted as the byte relay counts them. It returns no
// error: the Local logged its own.
func serveLocal(ctx context.Context, guest net.Conn, hs handshake, c *Config, log *slog.Logger, counts *Counts) {
	if hs.cancel {
		log.Debug("guest connection opened", "command", "SCARD_CANCEL", "host", "in-process")
	} else {
		log.Debug("guest connection opened", "guest_protocol", hs.guest.String(), "host_protocol", hs.host.String(), "host", "in-process")
	}
	err := c.Local.ServeOpened(ctx, countingConn{Conn: guest, up: &counts.Up, down: &counts.Down}, hs.prefix)
	if !hs.cancel && counts.Down.Load() >= versionReplySize {
		// The byte relay counts what follows the CMD_VERSION exchange.
		counts.Down.Add(^uint64(versionReplySize - 1))
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
		log.Debug("host side ended the guest connection", "err", err)
	}
}

// versionReplySize is the size of the reply to CMD_VERSION, a
// version_struct (src/winscard_msg.h).
const versionReplySize = 12

// countingConn counts the bytes read from and written to a guest
// connection that a Local serves.
type countingConn struct {
	net.Conn
	up, down *atomic.Uint64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.up.Add(uint64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.down.Add(uint64(n))
	return n, err
}
