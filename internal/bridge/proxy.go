package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// The protocol-aware stage. Most connections need none: when the guest and
// the daemon speak the same dialect and no policy applies, Serve pipes the
// bytes. Otherwise proxy.Proxy relays each direction message by message,
// run by the same pipe as the byte relay, so that a connection ends the
// same way in both.

// proxyAll reports whether every connection goes through the proxy: a
// policy or an audit log applies to all of them.
func (c *Config) proxyAll() bool { return c.Policy != nil || c.Audit }

// translates reports whether a guest proposing g is served by translation:
// the daemon is known, would reject g, and both versions are ones the
// proxy speaks.
func (c *Config) translates(g pcsc.Version) bool { return c.Daemon.Translates(g) }

// stage returns the dialect of a connection that needs the proxy after its
// handshake hs, and false for one that the byte relay serves.
func (c *Config) stage(hs handshake) (proxy.Dialect, bool) {
	if hs.cancel {
		// The socket of SCardCancel carries one request, answered in
		// any version.
		v := c.Daemon.Version
		if !v.Known() {
			v = pcsc.V44
		}
		return proxy.Dialect{Guest: v, Host: v}, hs.prefix != nil
	}
	d := proxy.Dialect{Guest: hs.guest, Host: hs.host, GuestSlots: c.GuestSlots, HostSlots: c.Daemon.Readers, Daemon: hs.daemon}
	if c.Daemon.Version != hs.daemon {
		// Not the daemon that was probed: its arrays are of unknown size.
		d.HostSlots = 0
	}
	if !d.Guest.Known() || !d.Host.Known() || !d.Daemon.Known() {
		// 4.3 and older, newer than 4.6, or a claimed major other than 4
		// that pcsc-lite 2.4.1 accepts: bytes only, but never past a
		// policy or audit log, which proxy.New then refuses.
		return d, c.proxyAll()
	}
	return d, c.proxyAll() || d.Translates()
}

// framing says how the byte relay may frame a connection that the proxy
// does not serve (see frame.go): one that speaks a known version at both
// ends. Reader arrays are framed only when their size is known: the
// daemon is the one probed.
func (c *Config) framing(hs handshake) (framed, bool) {
	if hs.cancel || !hs.guest.Known() || hs.guest != hs.host {
		return framed{}, false
	}
	f := framed{version: hs.guest}
	if c.Daemon.Version == hs.daemon {
		f.slots = c.Daemon.Readers
	}
	return f, true
}

// proxy relays a connection through proxy.Proxy.
func runProxy(ctx context.Context, guest, host net.Conn, d proxy.Dialect, prefix []byte, c *Config, log *slog.Logger, counts *Counts) error {
	pc := proxy.Config{
		Dialect: d, Guest: c.shared, Up: &counts.Up, Down: &counts.Down, Prefix: prefix,
		OnNotice: func(n *proxy.Notice) { logNotice(log, n) },
	}
	if c.Audit {
		pc.OnCall = func(call *proxy.Call) { logCall(log, call) }
	}
	p, err := proxy.New(guest, host, pc)
	if err != nil {
		guest.Close()
		host.Close()
		return err
	}
	defer p.Close()
	log.Debug("proxying guest connection", "guest_protocol", d.Guest.String(), "host_protocol", d.Host.String(),
		"guest_slots", d.GuestSlots, "host_slots", d.HostSlots)
	return pipe(ctx, guest, host, p.Requests, p.Replies)
}

// logNotice logs what the proxy did instead of relaying a call.
func logNotice(log *slog.Logger, n *proxy.Notice) {
	args := []any{"cmd", pcsc.CommandName(n.Command), "reason", n.Reason}
	if n.Reader != "" {
		args = append(args, "reader", n.Reader)
	}
	if n.RV != 0 {
		args = append(args, "rv", rvString(n.RV))
		log.Info("refused guest call", args...)
		return
	}
	log.Warn("guest cannot see a host reader", args...)
}

// logCall writes the audit line of one call.
func logCall(log *slog.Logger, c *proxy.Call) {
	msg := "pcsc call"
	if c.Event {
		msg = "pcsc event"
	}
	args := make([]any, 0, 16)
	args = append(args, "cmd", pcsc.CommandName(c.Command))
	if c.Reader != "" {
		args = append(args, "reader", c.Reader)
	}
	if c.HasRV {
		args = append(args, "rv", rvString(c.RV))
	}
	if !c.Event {
		args = append(args, "duration", c.Duration, "req_bytes", c.RequestBytes)
	}
	args = append(args, "reply_bytes", c.ReplyBytes)
	if c.Local {
		args = append(args, "answered_by", "cardshare")
	}
	log.Info(msg, args...)
}

func rvString(rv uint32) string { return fmt.Sprintf("0x%08X", rv) }
