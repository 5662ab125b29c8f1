package up

import (
	"github.com/cardshare/cardshare/internal/ccid"
	"github.com/cardshare/cardshare/internal/control"
)

// CCIDStatus fills in a qemu-ccid guest's status from its bridge's
// emulated readers: state "up" when QEMU is connected on every chardev,
// else "connecting"; since the latest change; the first chardev's error.
// A guest whose State is already set (failed, stopped) keeps it.
func CCIDStatus(g *control.GuestStatus, sts []ccid.Status) {
	g.Kind = control.KindQEMUCCID
	g.Control = "deny" // no SCardControl reaches a CCID guest
	g.Chardevs = []control.ChardevStatus{}
	up := len(sts) > 0
	for _, s := range sts {
		g.Chardevs = append(g.Chardevs, control.ChardevStatus{
			Chardev: s.Chardev, QEMU: s.QEMU, Reader: s.Reader, Card: s.Card,
			T0ForT1: s.T0ForT1, APDUs: s.APDUs, Since: s.Since.UTC(), LastError: s.LastError,
		})
		up = up && s.QEMU
		if s.Since.After(g.Since) {
			g.Since = s.Since.UTC()
		}
		if g.LastError == "" {
			g.LastError = s.LastError
		}
	}
	if g.State != "" {
		return
	}
	g.State = "connecting"
	if up {
		g.State = "up"
	}
}
