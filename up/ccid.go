package up

import (
	"context"
	"fmt"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/ccid"
	"github.com/cardshare/cardshare/internal/ccidconf"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/vm"
)

// A guest with ccid: gets the host's readers as QEMU's emulated USB CCID
// reader (internal/ccid), as `cardshare qemu attach` does, instead of an
// SSH forward.

// CCIDChardevs are the guest's chardevs: its ccid.chardev entries, else
// those of the libvirt domain vm (virsh dumpxml).
func CCIDChardevs(ctx context.Context, g config.Guest) ([]ccid.Endpoint, error) {
	if len(g.CCID.Chardevs) == 0 {
		eps, err := ccidconf.DomainChardevs(ctx, vm.ExecRunner, g.VM)
		if err != nil {
			return nil, fmt.Errorf("ccid guest: %w", err) // one %w: printed as one error
		}
		return eps, nil
	}
	var eps []ccid.Endpoint
	for _, s := range g.CCID.Chardevs {
		ep, err := ccid.ParseEndpoint(s, g.CCID.Listen)
		if err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// newBridge opens the guest's bridge on the host's PC/SC library (its
// listening chardevs are opened here).
func (f *Supervisor) newBridge(r *guestRun) (*ccid.Bridge, error) {
	lib, err := scard.Open()
	if err != nil {
		return nil, err
	}
	c := r.conf.CCID
	return ccid.New(ccid.NewSCardHost(lib), &ccid.Config{Reader: c.Reader, Chardevs: r.spec.chardevs,
		Exclusive: c.Exclusive, T1: c.T1, Logger: f.log.With("guest", r.conf.Name)})
}

// ccidStatus is a ccid guest's status entry.
func (r *guestRun) ccidStatus() control.GuestStatus {
	g := control.GuestStatus{Name: r.conf.Name, VM: r.conf.VM, Readers: []string{r.conf.CCID.Reader}}
	if r.bridge == nil {
		g.State, g.Since, g.LastError = "failed", r.at.UTC(), errString(r.err)
		if r.resolving {
			g.State = "connecting"
		}
		CCIDStatus(&g, nil)
		return g
	}
	if !r.running() {
		g.State, g.LastError = "failed", errString(r.runErr)
		if r.runErr == nil {
			g.State = "stopped"
		}
	}
	CCIDStatus(&g, r.bridge.Status())
	return g
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
