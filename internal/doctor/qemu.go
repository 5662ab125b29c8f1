package doctor

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cardshare/cardshare/internal/ccid"
	"github.com/cardshare/cardshare/internal/ccidconf"
)

// QEMU checks a QEMU CCID guest (`cardshare qemu attach`): target is a
// libvirt domain, whose passthrough smartcards give the chardevs, or a
// chardev (unix:PATH, tcp:HOST:PORT); listen as for attach --listen. Each
// result goes to cfg.Report as "qemu domain" and "qemu chardev".
func QEMU(ctx context.Context, cfg *Config, run ccidconf.Runner, target string, listen bool) Summary {
	d := &doctor{cfg: cfg}
	var eps []ccid.Endpoint
	if ep, err := ccid.ParseEndpoint(target, listen); err == nil && (ep.Network == "tcp" || filepath.IsAbs(ep.Address)) {
		eps = []ccid.Endpoint{ep}
	} else {
		var err error
		eps, err = ccidconf.DomainChardevs(ctx, run, target)
		if err != nil {
			d.report("qemu domain", Result{Fail, err.Error(), d.hint(err)})
			return d.sum
		}
		d.report("qemu domain", Result{OK, target + " has " + plural(len(eps), "passthrough smartcard"), ""})
	}
	for _, ep := range eps {
		d.report("qemu chardev", chardevResult(ep))
	}
	return d.sum
}

// chardevResult checks that QEMU can be reached on a chardev cardshare
// dials, or that cardshare can listen on one QEMU dials.
func chardevResult(ep ccid.Endpoint) Result {
	fix := "start the VM (its chardev socket exists while QEMU runs with server=on), or check the path against `cardshare qemu snippet`"
	switch {
	case ep.Listen && ep.Network == "unix":
		if fi, err := os.Stat(filepath.Dir(ep.Address)); err != nil || !fi.IsDir() {
			return Result{Fail, ep.String() + ": its directory does not exist", "create " + filepath.Dir(ep.Address) + " (mode 0700), or choose another path"}
		}
		return Result{OK, ep.String() + ": `cardshare qemu attach --listen` can listen here", ""}
	case ep.Listen:
		return Result{OK, ep.String() + ": cardshare listens here on loopback", ""}
	}
	if ep.Network == "unix" {
		fi, err := os.Lstat(ep.Address)
		switch {
		case err != nil:
			return Result{Warn, ep.String() + ": no socket there (is the VM running?)", fix}
		case fi.Mode().Type() != fs.ModeSocket:
			return Result{Fail, ep.String() + ": not a socket", fix}
		}
	}
	c, err := net.DialTimeout(ep.Network, ep.Address, 2*time.Second)
	if err != nil {
		return Result{Warn, ep.String() + ": QEMU does not answer: " + err.Error(), fix}
	}
	c.Close()
	return Result{OK, ep.String() + ": QEMU listens; run `cardshare qemu attach`", ""}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
