package doctor

import (
	"context"
	"errors"
	"fmt"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
)

// backendChecks reports which backend would serve the guests (the
// "backend" line: what auto picks and why). When that is the native
// backend it also checks it in place of the pcscd socket's checks ("host
// PC/SC", "readers") and returns it and what it speaks, for the caller to
// close; otherwise the socket's checks follow and src is nil.
func (d *doctor) backendChecks(ctx context.Context) (src hostpcsc.Source, daemon pcsc.Daemon) {
	socket := d.cfg.PCSCDSocket
	switch d.cfg.Backend {
	case hostpcsc.PCSCDSocket:
		d.report("backend", Result{Status: OK, Msg: "socket (--backend socket): the pcscd socket " + socket})
		return nil, daemon
	case hostpcsc.Native:
		s, dm, err := hostpcsc.Open(ctx, hostpcsc.Native, socket, nil)
		if err != nil {
			d.report("backend", Result{Status: Fail, Msg: "native (--backend native): " + err.Error(), Fix: d.hint(err)})
			return nil, daemon
		}
		d.report("backend", Result{Status: OK, Msg: "native (--backend native): " + s.String()})
		src, daemon = s, dm
	default:
		c, err := hostpcsc.Pick(ctx, socket, nil)
		var ae *hostpcsc.AutoError
		if errors.As(err, &ae) {
			// The socket's own line follows, with its fix.
			d.report("backend", Result{Status: Fail, Msg: "auto: neither the pcscd socket (below) nor the native backend answers: " + ae.Native.Error(), Fix: d.hint(ae.Native)})
			return nil, daemon
		}
		if err != nil {
			d.report("backend", Result{Status: Fail, Msg: "auto: " + err.Error(), Fix: d.hint(err)})
			return nil, daemon
		}
		d.report("backend", Result{Status: OK, Msg: fmt.Sprintf("auto picks %s: %s", hostpcsc.BackendOf(c.Source), c.Why)})
		if hostpcsc.BackendOf(c.Source) != hostpcsc.Native {
			hostpcsc.Close(c.Source)
			return nil, daemon
		}
		src, daemon = c.Source, c.Daemon
	}
	d.report("host PC/SC", Result{Status: OK, Msg: fmt.Sprintf("%s answers; guests of protocol 4.4, 4.5 and 4.6 are served natively (%s)", src, daemon)})
	if n, ok := src.(*nativepcsc.Source); ok {
		h := n.Health(ctx)
		rs := make([]reader, len(h.Readers))
		for i, name := range h.Readers {
			rs[i] = reader{Name: name}
		}
		d.report("readers", readersCheck(rs, h.Err))
	}
	return src, daemon
}
