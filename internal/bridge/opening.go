package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// handshake is what open learned of a connection.
type handshake struct {
	// cancel is set for the temporary socket of SCardCancel.
	cancel bool
	// guest and host are the protocol versions of the two ends once the
	// CMD_VERSION exchange is over (see proxy.Dialect).
	guest, host pcsc.Version
	// daemon is the version the daemon's accepting reply named: its own.
	daemon pcsc.Version
	// client is the version the guest's library proposed first.
	client pcsc.Version
	// translated is set when the relay answered the guest's CMD_VERSION
	// itself and spoke the daemon's version upstream.
	translated bool
	// prefix is the guest's opening message when open did not send it
	// to the host, for the proxy to handle: SCARD_CANCEL when every
	// connection is proxied, so that the proxy checks its context.
	prefix []byte
	// release gives back the connection's slot of Config.Limiter.
	release func()
	// local is set when Config.Local serves the connection (prefix is
	// its opening message): nothing was dialed.
	local bool
}

// errOverCap is open's error for a connection refused by Config.Limiter.
var errOverCap = errors.New("bridge: guest connection over the cap")

// acquire takes a slot of c.Limiter for a connection that opened with o.
// The temporary socket of SCardCancel may go over the guest's cap
// (connlimit.Limiter.AcquireCancel), so that a guest whose connections
// all wait can still cancel them.
func (c *Config) acquire(o pcsc.Opening) (release func(), ok bool) {
	if c.Limiter == nil {
		return func() {}, true
	}
	if o.Command == pcsc.CmdVersion {
		return c.Limiter.Acquire(c.Guest)
	}
	return c.Limiter.AcquireCancel(c.Guest)
}

// open reads the guest's opening message, dials the host, and relays the
// CMD_VERSION exchanges until the daemon accepts one. It returns the host
// connection, ready to be piped, with nothing left unread on either side:
// a client sends nothing while it waits for the reply to CMD_VERSION.
//
// A client of pcsc-lite 2.4.1 or later that is rejected sends CMD_VERSION a
// second time on the same connection with the daemon's version; older
// clients give up and close. When the daemon rejects the guest and the guest
// gives up, open returns a *pcsc.Mismatch.
//
// When c.Daemon says that the daemon would reject the guest's version and
// the proxy knows both, open translates instead: it proposes the daemon's
// version upstream and answers the guest as a daemon of the guest's
// version would.
func open(ctx context.Context, guest net.Conn, dial DialFunc, c *Config, log *slog.Logger) (_ net.Conn, _ handshake, err error) {
	// Not every net.Conn supports deadlines (SSH channels do not), so a
	// watchdog that closes the connections bounds each step instead.
	var host net.Conn
	var mu sync.Mutex
	watchdog := time.AfterFunc(c.OpeningTimeout, func() {
		mu.Lock()
		defer mu.Unlock()
		guest.Close()
		if host != nil {
			host.Close()
		}
	})
	defer watchdog.Stop()

	var buf [pcsc.OpeningMax]byte
	o, raw, err := pcsc.ReadOpening(guest, &buf)
	if err != nil {
		return nil, handshake{}, fmt.Errorf("bridge: read opening message: %w", err)
	}
	// The cap is checked before the host is dialed: a refused connection
	// never reaches pcscd.
	release, ok := c.acquire(o)
	if !ok {
		guest.Write(pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService))
		return nil, handshake{}, errOverCap
	}
	defer func() {
		if err != nil {
			release()
		}
	}()

	if c.local(o) {
		if !watchdog.Stop() {
			return nil, handshake{}, errOpeningTimeout
		}
		hs := handshake{local: true, cancel: o.Command != pcsc.CmdVersion, prefix: bytes.Clone(raw), release: release}
		if !hs.cancel {
			hs.guest, hs.host, hs.daemon, hs.client = o.Version, o.Version, o.Version, o.Version
		}
		return nil, hs, nil
	}

	dctx, cancel := context.WithTimeout(ctx, c.OpeningTimeout)
	h, err := dial(dctx)
	cancel()
	if err != nil {
		// Answer as a missing daemon would look to the client, so the
		// guest sees "Service not available" at once instead of a hang.
		guest.Write(pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService))
		return nil, handshake{}, fmt.Errorf("bridge: connect to host pcscd: %w", err)
	}
	mu.Lock()
	host = h
	mu.Unlock()
	if o.Command != pcsc.CmdVersion {
		if !watchdog.Stop() {
			return nil, handshake{}, errOpeningTimeout
		}
		log.Debug("guest connection opened", "command", "SCARD_CANCEL")
		hs := handshake{cancel: true, release: release}
		if c.proxyAll() {
			hs.prefix = bytes.Clone(raw)
			return h, hs, nil
		}
		return h, hs, writeAll(h, raw)
	}

	var rejected *pcsc.Mismatch
	var rbuf [12]byte
	first := o.Version // a rejected client falls back to another
	for {
		translate := c.translates(o.Version)
		var r pcsc.VersionReply
		if translate {
			r, err = exchangeTranslated(guest, h, o.Version, c.Daemon.Version, &rbuf)
		} else {
			r, err = exchangeVersion(guest, h, raw, &rbuf)
		}
		if err != nil {
			h.Close()
			return nil, handshake{}, err
		}
		if r.Accepted() {
			if !watchdog.Stop() {
				return nil, handshake{}, errOpeningTimeout
			}
			if rejected != nil {
				log.Info("guest fell back to the host's protocol version",
					"guest_protocol", rejected.Client.String(), "host_protocol", r.Version.String())
			}
			hs := handshake{guest: o.Version, host: r.Version, daemon: r.Version, client: first, translated: translate, release: release}
			if !translate {
				// Both ends speak the older of the two: the client
				// stores the daemon's minor, and the daemon serves an
				// older client in its own dialect (pcsc-lite 2.5.1
				// src/winscard_clnt.c:593-642, src/winscard_svc.c:393-436).
				if r.Version.Minor < o.Version.Minor {
					hs.guest = r.Version
				}
				hs.host = hs.guest
			}
			log.Debug("guest connection opened", "guest_protocol", o.Version.String(), "host_protocol", r.Version.String(), "translated", translate)
			return h, hs, nil
		}
		if r.RV == pcsc.ReturnNoService {
			// Not a version check: pcscd rejects a version with
			// SCARD_E_SERVICE_STOPPED (src/winscard_svc.c, CMD_VERSION).
			// The guest has its answer; there is nothing to fall back to.
			h.Close()
			return nil, handshake{}, fmt.Errorf("%w (guest protocol %s)", ErrHostRefused, o.Version)
		}
		d := c.Daemon
		if d.Version != r.Version {
			d = pcsc.Daemon{Version: r.Version}
		}
		rejected = &pcsc.Mismatch{Client: o.Version, Daemon: d}
		log.Debug("host pcscd rejected the guest's protocol version",
			"guest_protocol", o.Version.String(), "host_protocol", r.Version.String())

		watchdog.Reset(c.OpeningTimeout)
		o, raw, err = pcsc.ReadOpening(guest, &buf)
		if err != nil || o.Command != pcsc.CmdVersion {
			h.Close()
			return nil, handshake{}, rejected
		}
	}
}

var errOpeningTimeout = errors.New("bridge: opening handshake timed out")

// ErrHostRefused means the host answered a guest's CMD_VERSION with
// SCARD_E_NO_SERVICE: it refused the connection itself, whatever the
// version. A cardshare relay host answers so for a guest over its
// connection cap (internal/connlimit) or when it cannot reach its own
// pcscd; a pcscd that rejects a version answers SCARD_E_SERVICE_STOPPED
// (*pcsc.Mismatch).
var ErrHostRefused = errors.New("bridge: host refused the connection (SCARD_E_NO_SERVICE)")

// HostRefusedHint is what to do about ErrHostRefused.
const HostRefusedHint = "the host serves one guest at most max_guest_conns pcscd connections at once (max_conns for all guests; `--max-guest-conns`, `--max-conns` on the command line), and refuses the rest: close the PC/SC programs in this guest that hold connections open, or raise the cap on the host; the host's log names the cap, or says that its pcscd is down"

// exchangeVersion sends one CMD_VERSION request to the daemon and passes its
// reply to the guest.
func exchangeVersion(guest, host net.Conn, req []byte, rbuf *[12]byte) (pcsc.VersionReply, error) {
	if err := writeAll(host, req); err != nil {
		return pcsc.VersionReply{}, fmt.Errorf("bridge: send CMD_VERSION to host pcscd: %w", err)
	}
	r, err := pcsc.ReadVersionReply(host, rbuf)
	if err != nil {
		return r, fmt.Errorf("bridge: read CMD_VERSION reply from host pcscd: %w", err)
	}
	if err := writeAll(guest, rbuf[:]); err != nil {
		return r, fmt.Errorf("bridge: send CMD_VERSION reply to guest: %w", err)
	}
	return r, nil
}

// exchangeTranslated proposes the daemon's version d to the host for a
// guest that proposed g, which the daemon would reject. When the daemon
// accepts, the guest is told that g is accepted, with g as the daemon's
// version: what a daemon of the guest's version answers. When it does
// not (it is not the daemon that was probed), the guest gets its
// rejection as it is.
func exchangeTranslated(guest, host net.Conn, g, d pcsc.Version, rbuf *[12]byte) (pcsc.VersionReply, error) {
	if err := writeAll(host, pcsc.AppendVersionRequest(nil, d)); err != nil {
		return pcsc.VersionReply{}, fmt.Errorf("bridge: send CMD_VERSION to host pcscd: %w", err)
	}
	r, err := pcsc.ReadVersionReply(host, rbuf)
	if err != nil {
		return r, fmt.Errorf("bridge: read CMD_VERSION reply from host pcscd: %w", err)
	}
	reply := rbuf[:]
	if r.Accepted() {
		reply = pcsc.AppendVersionReply(rbuf[:0], pcsc.VersionReply{Version: g})
	}
	if err := writeAll(guest, reply); err != nil {
		return r, fmt.Errorf("bridge: send CMD_VERSION reply to guest: %w", err)
	}
	return r, nil
}

func writeAll(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}
