package up

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// closedTarget is an SSH target where nothing listens: a guest's forward
// on it stays connecting, and never reaches a pcscd.
func closedTarget(t *testing.T) sshdial.Target {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return sshdial.Target{HostName: "127.0.0.1", Port: port, User: "nobody"}
}

func guestsConfig(names ...string) *config.Config {
	cfg := &config.Config{}
	for _, n := range names {
		cfg.Guests = append(cfg.Guests, config.Guest{Name: n, Destination: n})
	}
	return cfg
}

// A guest whose resolution (ssh -G, a VM manager) is slow delays no other
// guest: each starts as soon as its own is resolved, where all used to
// wait for the slowest (issue 13, item 10). Until then the slow one shows
// as connecting.
func TestStartEachAsResolved(t *testing.T) {
	target := closedTarget(t)
	release := make(chan struct{})
	var mu sync.Mutex
	started := map[string]bool{}
	startedAB := make(chan struct{})
	s := New(t.Context(), Options{OnEvent: func(e forward.Event, _ string) {
		mu.Lock()
		defer mu.Unlock()
		if e.State == forward.StateConnecting && !started[e.Guest] {
			started[e.Guest] = true
			if e.Guest != "slow" && started["a"] && started["b"] {
				close(startedAB)
			}
		}
	}})
	s.lookup = func(ctx context.Context, g config.Guest, _ string) (sshdial.Target, vm.Source, error) {
		if g.Name == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return target, vm.Source{}, nil
	}
	applied := make(chan []error, 1)
	go func() { applied <- s.apply(guestsConfig("slow", "a", "b"), hostInfo{}) }()
	defer s.Stop()

	select {
	case <-startedAB:
	case <-time.After(10 * time.Second):
		t.Fatal("guests a and b did not start while slow was being resolved")
	}
	st := s.Status()
	if len(st.Guests) != 3 || st.Guests[0].Name != "slow" || st.Guests[0].State != string(forward.StateConnecting) {
		t.Errorf("status while slow resolves: %+v, want slow first and connecting", st.Guests)
	}
	mu.Lock()
	early := started["slow"]
	mu.Unlock()
	if early {
		t.Error("slow started before its resolution ended")
	}
	close(release)
	select {
	case errs := <-applied:
		if len(errs) != 0 {
			t.Errorf("apply: %v", errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("apply did not return after the last resolution")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		ok := started["slow"]
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slow did not start once resolved")
		}
	}
}

// At most resolveSlots guests are resolved at once (each may be a
// process), and guests that name the same destination are resolved once.
func TestResolveBounded(t *testing.T) {
	target := closedTarget(t)
	var running, most, calls atomic.Int32
	s := New(t.Context(), Options{})
	s.lookup = func(ctx context.Context, g config.Guest, _ string) (sshdial.Target, vm.Source, error) {
		calls.Add(1)
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		return target, vm.Source{}, nil
	}
	var names []string
	for i := range 3 * resolveSlots {
		names = append(names, fmt.Sprintf("g%02d", i))
	}
	cfg := guestsConfig(names...)
	cfg.Guests = append(cfg.Guests, config.Guest{Name: "again", Destination: "g00"})
	defer s.Stop()
	if errs := s.apply(cfg, hostInfo{}); len(errs) != 0 {
		t.Fatalf("apply: %v", errs)
	}
	if m := most.Load(); m > resolveSlots {
		t.Errorf("%d resolutions at once, want at most %d", m, resolveSlots)
	}
	if c := calls.Load(); c != int32(len(names)) {
		t.Errorf("%d resolutions for %d destinations", c, len(names))
	}
}

// A Stop while guests are still being resolved wins: a guest resolved
// after it is not started.
func TestStopDuringResolution(t *testing.T) {
	target := closedTarget(t)
	release := make(chan struct{})
	var events atomic.Int32
	s := New(t.Context(), Options{OnEvent: func(forward.Event, string) { events.Add(1) }})
	s.lookup = func(ctx context.Context, g config.Guest, _ string) (sshdial.Target, vm.Source, error) {
		<-release
		return target, vm.Source{}, nil
	}
	applied := make(chan struct{})
	go func() { s.apply(guestsConfig("a"), hostInfo{}); close(applied) }()
	for len(s.Status().Guests) == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Stop()
	close(release)
	<-applied
	if n := events.Load(); n != 0 {
		t.Errorf("%d events from a guest resolved after Stop", n)
	}
	if g := s.Status().Guests; len(g) != 0 {
		t.Errorf("status after Stop: %+v", g)
	}
}
