package bridge

import (
	"log/slog"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// LogCompat logs whether the guest's libpcsclite c and the host's PC/SC d
// can talk, as soon as a mode learns the guest's release: at Info when d
// serves c as it is or when translator (who translates: "cardshare" in SSH
// mode, "the host" in relay mode's agent) translates, at Error with the
// fix when d will reject c. A zero d (not probed) logs nothing.
func LogCompat(log *slog.Logger, c pcsc.Client, d pcsc.Daemon, translator string) {
	if d.Version == (pcsc.Version{}) {
		return
	}
	switch {
	case d.Serves(c):
		log.Info("guest libpcsclite is compatible with host pcscd", "guest", c.String(), "host", d.String())
	case d.Translates(c.Version):
		log.Info("guest libpcsclite and host pcscd speak different protocol versions; "+translator+" translates", "guest", c.String(), "host", d.String())
	default:
		m := &pcsc.Mismatch{Client: c.Version, Daemon: d}
		log.Error("guest libpcsclite will be rejected by host pcscd", "guest", c.String(), "host", d.String(), "hint", m.Hint())
	}
}
