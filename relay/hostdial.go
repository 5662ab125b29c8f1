package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/backoff"
	"github.com/cardshare/cardshare/relay/trust"
)

// dialTarget is a guest, or a pending pairing, that the host connects to.
type dialTarget struct {
	name    string
	addr    string
	key     trust.Fingerprint // the guest's pinned key; zero for a pairing
	pairing bool
}

// id tells targets apart: a guest paired again, or given another address,
// is a new target.
func (t dialTarget) id() string {
	if t.pairing {
		return "pair " + t.name + " " + t.addr
	}
	return "guest " + t.name + " " + t.addr + " " + t.key.String()
}

// errNotWanted is why the host ends a session it dialed when the guest list
// no longer has the guest at that address.
var errNotWanted = errors.New("revoked, paired again or given another address")

// errWrongPeer means the host dialed a guest's address and something else
// answered there: another guest's key, or a pairing where a session was due.
var errWrongPeer = errors.New("relay: the peer at that address is not the guest paired there")

// check reports whether a peer that proved key fp and asked for proto is
// what the host dialed t for. A nil t (a connection the host accepted)
// accepts whatever the TLS configuration let through.
func (t *dialTarget) check(proto string, fp trust.Fingerprint) error {
	switch {
	case t == nil:
		return nil
	case t.pairing && proto != trust.ProtoPair:
		return fmt.Errorf("%w: expected a pairing (relay join --listen), got %s", errWrongPeer, proto)
	case !t.pairing && (proto != trust.ProtoRelay || !fp.Equal(t.key)):
		return fmt.Errorf("%w: expected %s with key %s, got %s with key %s", errWrongPeer, t.name, t.key, proto, fp)
	}
	return nil
}

// dialGuests keeps one dialing loop running for each guest and pending
// pairing that has an address to dial, as the guest list says, until ctx is
// done. A guest revoked, paired again or given another address has its loop
// stopped, and its session, if any, is cut off by watch.
func (h *Host) dialGuests(ctx context.Context) {
	running := make(map[string]context.CancelCauseFunc)
	var wg sync.WaitGroup
	defer func() {
		for _, stop := range running {
			stop(nil)
		}
		wg.Wait()
	}()
	t := time.NewTicker(h.cfg.PollInterval)
	defer t.Stop()
	for {
		want := h.dialTargets(time.Now())
		for id, stop := range running {
			if _, ok := want[id]; !ok {
				stop(errNotWanted)
				delete(running, id)
			}
		}
		for id, target := range want {
			if _, ok := running[id]; !ok {
				tctx, stop := context.WithCancelCause(ctx)
				running[id] = stop
				wg.Go(func() { h.dialLoop(tctx, ctx, target) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dialTargets lists what the guest list says the host should dial now.
func (h *Host) dialTargets(now time.Time) map[string]dialTarget {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make(map[string]dialTarget)
	if err := h.refreshLocked(); err != nil {
		return want // watch logs it; sessions stay up, dialing stops
	}
	for _, g := range h.list.Guests {
		if g.Dial != "" && g.Active() {
			t := dialTarget{name: g.Name, addr: g.Dial, key: g.Key}
			want[t.id()] = t
		}
	}
	for _, p := range h.list.Pairings {
		if p.Dial != "" && now.Before(p.Expires) {
			t := dialTarget{name: p.Name, addr: p.Dial, pairing: true}
			want[t.id()] = t
		}
	}
	return want
}

// dialLoop connects to t, serves the session or pairing, and starts over
// with backoff, until ctx is done. While the guest has a session that it
// started itself, the loop only waits. host is the serving Host's context,
// which ctx derives from.
func (h *Host) dialLoop(ctx, host context.Context, t dialTarget) {
	log := h.log.With("guest", t.name, "dial", t.addr)
	maxBackoff := h.cfg.MaxBackoff
	if t.pairing {
		maxBackoff = min(maxBackoff, 2*time.Second)
		log.Info("connecting to pair", "hint", "run `cardshare relay join --listen ADDR --token TOKEN` in the guest")
	}
	retry := backoff.Backoff{Min: h.cfg.MinBackoff, Max: maxBackoff}
	failing := false
	for {
		if !t.pairing && h.connected(t.name) {
			if !backoff.Sleep(ctx, h.cfg.MinBackoff) {
				return
			}
			continue
		}
		h.setDialing(t, "connecting", time.Time{}, "")
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, h.cfg.HandshakeTimeout)
		raw, err := h.cfg.DialGuest(dctx, t.addr)
		cancel()
		if err == nil {
			hctx := ctx
			if t.pairing {
				// Redeeming the token drops the pending pairing, and
				// with it this target: dialGuests then stops the loop,
				// which must not cut off the answer to the guest. Only
				// the host's stop (and the handshake timeout) ends a
				// pairing under way.
				hctx = host
			}
			err = h.handle(hctx, raw, func() {}, &t)
		}
		if ctx.Err() != nil || (err == nil && t.pairing) {
			return // a pairing is done once
		}
		if err == nil {
			failing = false
			if time.Since(start) > maxBackoff {
				retry.Reset()
			}
		} else if !failing {
			log.Warn("cannot reach guest; retrying", "err", err)
			failing = true
		} else {
			log.Debug("cannot reach guest; retrying", "err", err)
		}
		wait := retry.Next()
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		h.setDialing(t, "backing-off", time.Now().Add(wait), reason)
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// connected reports whether the guest called name has a session now.
func (h *Host) connected(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.guests[name]
	return g != nil && g.sess != nil
}

// setDialing records what dialing t does now, for Status. A pairing has no
// status yet: it is no guest until it is done.
func (h *Host) setDialing(t dialTarget, what string, retryAt time.Time, lastErr string) {
	if t.pairing {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.guests[t.name]
	if g == nil || !g.key.Equal(t.key) {
		g = &hostGuest{key: t.key}
		h.guests[t.name] = g
	}
	g.dial, g.dialing, g.retryAt = t.addr, what, retryAt
	if lastErr != "" {
		g.lastErr = lastErr
	}
}
