package config

import (
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cardshare/cardshare/internal/unixsock"
)

// ccid checks a ccid: guest (QEMU's emulated USB CCID reader). The
// chardev forms are those of `cardshare qemu attach --chardev`; config
// imports no transport, so the bridge's parser is not used here.
func (v *validator) ccid(i int, g *Guest) {
	c := g.CCID
	const hint = "a ccid guest gets the card through QEMU, not SSH: remove it"
	for _, k := range []struct {
		key string
		set bool
	}{{"destination", g.Destination != ""}, {"socket", g.Socket != ""}, {"setup_guest", g.SetupGuest},
		{"readers", len(g.Readers) > 0}, {"control", g.Control != ""}, {"audit", g.Audit}} {
		if k.set {
			h := hint
			if k.key == "readers" {
				h = "choose the host readers with `reader:` inside ccid:"
			}
			v.fail(key(i, k.key), g.Line, h, "%s does not apply to guest %q, which has ccid:", k.key, g.label())
		}
	}
	switch {
	case g.VM == "" && len(c.Chardevs) == 0:
		v.fail(key(i, "ccid"), g.Line, "add `vm: DOMAIN` (a libvirt domain with a passthrough smartcard) or `chardev: unix:/path/to/ccid.sock` under ccid:",
			"ccid guest has neither vm nor ccid.chardev")
	case g.Name == "" && g.VM == "":
		v.fail(key(i, "ccid"), g.Line, "add `name:`, which status and logs show", "ccid guest with a chardev and no vm has no name")
	}
	switch _, err := path.Match(c.Reader, ""); {
	case strings.TrimSpace(c.Reader) == "":
		v.fail(key(i, "ccid"), g.Line, `add reader: "Yubico YubiKey*" (a glob of host reader names; "*" passes every reader)`, "ccid has no reader")
	case err != nil:
		v.fail(key(i, "ccid.reader"), g.Line, "patterns use * ? and [...]; escape a literal one with \\", "reader pattern %q is malformed", c.Reader)
	}
	if c.Listen && len(c.Chardevs) == 0 {
		v.fail(key(i, "ccid.listen"), g.Line, "a libvirt domain says who listens (source mode 'connect' makes cardshare listen): remove listen, or give chardev:",
			"listen applies to ccid.chardev only")
	}
	for j, s := range c.Chardevs {
		k := key(i, "ccid.chardev."+strconv.Itoa(j))
		if msg := chardevProblem(s, c.Listen); msg != "" {
			v.fail(k, g.Line, "write unix:/absolute/path.sock or tcp:127.0.0.1:PORT, as in QEMU's -chardev socket,path=... or host=...,port=...", "chardev %q: %s", s, msg)
		}
	}
}

// chardevProblem says what is wrong with a chardev, or "".
func chardevProblem(s string, listen bool) string {
	network, addr, _ := strings.Cut(s, ":")
	switch network {
	case "unix":
		switch {
		case !filepath.IsAbs(addr):
			return "not an absolute socket path"
		case len(addr) > unixsock.MaxPath:
			return "socket path too long"
		}
	case "tcp":
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "want tcp:HOST:PORT"
		}
		if a, err := netip.ParseAddr(host); listen && host != "localhost" && (err != nil || !a.IsLoopback()) {
			return "listen on a loopback address only (the chardev carries PINs unauthenticated)"
		}
	default:
		return "want unix:PATH or tcp:HOST:PORT"
	}
	return ""
}
