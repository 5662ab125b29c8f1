package relay

import (
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// GuestStatus is a snapshot of one guest as the host sees it.
type GuestStatus struct {
	Name      string
	Connected bool
	Revoked   bool      // the guest list no longer accepts its key
	Addr      string    // where the current or last session came from
	Since     time.Time // when the current or last session began
	Sessions  uint64    // sessions since the host started
	// Dial is where the host connects to the guest; "" when the guest
	// connects to the host. Dialing says what the host does about it while
	// not Connected: "connecting", or "backing-off" until RetryAt.
	Dial, Dialing string
	RetryAt       time.Time
	// LastError is why the last session or attempt ended; "" if none did.
	LastError string
	// Policy is the guest's reader policy (trust.GuestRecord.Policy); nil when
	// it may use every reader, or when HostConfig.Relay.Policy applies.
	Policy *pcsc.Policy
	// Client is the protocol version the guest's libpcsclite proposed in
	// its last connection; the zero Version before its first one.
	Client pcsc.Version
	// Open, Connections, Failed, BytesUp and BytesDown count the guest's
	// relayed pcsc-lite connections since the host started.
	Open                int64
	Connections, Failed uint64
	BytesUp, BytesDown  uint64
}

// Status returns a snapshot of every active guest in the guest list and of
// every other guest that connected since the host started, sorted by name.
func (h *Host) Status() []GuestStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked() // on error h.list is nil: watch logs it
	var out []GuestStatus
	for name, g := range h.guests {
		// While the list cannot be read, nobody counts as revoked.
		rec, ok := h.list.Current(g.key, name)
		client, _ := g.stats.Client()
		out = append(out, GuestStatus{Client: client,
			Name: name, Connected: g.sess != nil, Revoked: h.list != nil && !ok, Policy: rec.Policy(),
			Addr: g.addr, Since: g.since, Sessions: g.sessions,
			Dial: g.dial, Dialing: g.dialing, RetryAt: g.retryAt, LastError: g.lastErr,
			Open: g.stats.Open.Load(), Connections: g.stats.Total.Load(), Failed: g.stats.Failed.Load(),
			BytesUp: g.stats.Up.Load(), BytesDown: g.stats.Down.Load(),
		})
	}
	if h.list != nil {
		for _, rec := range h.list.Guests {
			if g := h.guests[rec.Name]; rec.Active() && (g == nil || !g.key.Equal(rec.Key)) {
				out = slices.DeleteFunc(out, func(s GuestStatus) bool { return s.Name == rec.Name })
				out = append(out, GuestStatus{Name: rec.Name, Dial: rec.Dial, Policy: rec.Policy()})
			}
		}
	}
	slices.SortFunc(out, func(a, b GuestStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// refused logs a connection the host turned away.
func (h *Host) refused(addr net.Addr, err error) {
	if n, ok := h.fails.Allow(time.Now()); ok {
		h.log.Warn("refused connection", "addr", addr.String(), "err", err, "not_logged", n)
	}
}
