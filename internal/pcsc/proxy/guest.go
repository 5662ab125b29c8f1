package proxy

import (
	"sync"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// maxCache bounds the names a Guest remembers a decision for. Names come
// from the host's arrays and from the guest's CONNECT requests; a guest
// cannot grow the cache past it by inventing names.
const maxCache = 256

// maxEvents is the largest value of pcscd's reader events counter, an
// int16_t that wraps back to 1 (src/readerfactory.c:78, 437-440).
const maxEvents = 0x7FFF

// Guest is the state that the proxied connections of one guest share: its
// policy, the contexts pcscd issued to it, and the reader events counter
// the proxy answers CMD_GET_READER_EVENTS with. Its methods are safe for
// concurrent use.
type Guest struct {
	policy pcsc.Policy
	// guard is set when every connection of the guest is proxied, so
	// that contexts holds all contexts the guest was issued.
	guard bool

	mu       sync.Mutex
	contexts map[uint32]int  // hContexts issued to the guest, with their count
	visible  map[string]bool // decisions of policy.Allows by name
	warned   map[string]bool // readers already reported as cut off
	setHash  uint64          // the visible reader names last seen
	seen     bool            // setHash is set
	events   uint32          // the reader events counter, 1 to maxEvents
}

// NewGuest returns the shared state for a guest with policy p, which is
// copied. A non-nil p, even an empty one, also says that every connection
// of the guest goes through a Proxy, so that the contexts issued to it are
// all known and SCARD_CANCEL is refused for any other (pcscd
// looks a cancelled context up across all its clients,
// src/winscard_svc.c:673-707 in pcsc-lite 2.5.1). Nil means no
// policy and no such check.
func NewGuest(p *pcsc.Policy) *Guest {
	g := &Guest{contexts: map[uint32]int{}, visible: map[string]bool{}, warned: map[string]bool{}, events: 1}
	if p != nil {
		g.guard = true
		g.policy = *p
		g.policy.Readers = append([]string(nil), p.Readers...)
	}
	return g
}

// Policy returns the guest's policy.
func (g *Guest) Policy() *pcsc.Policy { return &g.policy }

// guards reports whether SCARD_CANCEL is checked against the contexts
// issued to the guest.
func (g *Guest) guards() bool { return g.guard }

// OwnsContext reports whether pcscd issued the context h to one of the
// guest's connections that is still open.
func (g *Guest) OwnsContext(h uint32) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.contexts[h] > 0
}

func (g *Guest) addContext(h uint32) {
	g.mu.Lock()
	g.contexts[h]++
	g.mu.Unlock()
}

func (g *Guest) dropContext(h uint32) {
	g.mu.Lock()
	if g.contexts[h]--; g.contexts[h] <= 0 {
		delete(g.contexts, h)
	}
	g.mu.Unlock()
}

// allows is Policy.Allows for a name in a wire buffer, cached so that the
// arrays a guest reads again and again cost no allocation.
func (g *Guest) allows(name []byte) bool {
	if !g.policy.Filters() {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.visible[string(name)]; ok {
		return v
	}
	s := string(name)
	v := g.policy.Allows(s)
	if len(g.visible) < maxCache {
		g.visible[s] = v
	}
	return v
}

// firstCut reports whether the reader name is cut off for the first time,
// so that it is reported once per guest.
func (g *Guest) firstCut(name []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.warned[string(name)] || len(g.warned) >= maxCache {
		return false
	}
	g.warned[string(name)] = true
	return true
}

// nameHash hashes one reader name; XORed together, the hashes of a set do
// not depend on the order of the readers in the array.
func nameHash(name []byte) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for _, c := range name {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// observe records the set of visible reader names of an array the guest
// was sent, and counts a change of the set as pcscd counts readers added
// and removed.
func (g *Guest) observe(set uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen && set != g.setHash {
		g.events++
		if g.events > maxEvents {
			g.events = 1
		}
	}
	g.setHash, g.seen = set, true
}

// readerEvents is the value for CMD_GET_READER_EVENTS.
func (g *Guest) readerEvents() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.events
}
