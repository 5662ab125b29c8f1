package relay_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

// The reverse direction: the host dials the agent's listener, for a guest
// that the host can reach but that cannot reach the host.

// fastDial makes the host redial a guest within a few tens of milliseconds.
func fastDial(c *relay.HostConfig) {
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
}

// guestListener listens where a reverse agent waits for the host.
func guestListener(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := relay.ListenAddr(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// joinListening pairs a guest called name that listens on ln.
func (e *hostEnv) joinListening(t *testing.T, name string, ln net.Listener) *trust.Credentials {
	t.Helper()
	return e.joinListeningVia(t, name, ln, ln.Addr().String())
}

// joinListeningVia is joinListening with the host dialing addr, which leads
// to ln.
func (e *hostEnv) joinListeningVia(t *testing.T, name string, ln net.Listener, addr string) *trust.Credentials {
	t.Helper()
	tok, err := e.state.PairWith(name, trust.PairOptions{Dial: addr}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := relay.JoinListening(context.Background(), ln, tok, &relay.JoinConfig{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("join: %v\nhost log:\n%s", err, e.log)
	}
	if creds.Guest != name || creds.Host != "" {
		t.Fatalf("joined as %q with host %q, want %q and no host", creds.Guest, creds.Host, name)
	}
	creds.Listen = ln.Addr().String()
	return creds
}

// listeningGuest pairs a guest called name that listens on a loopback port
// for the host to dial it, and starts its agent there, connected. It returns
// the agent and the address it listens on.
func (e *hostEnv) listeningGuest(t *testing.T, name string) (*agentEnv, string) {
	t.Helper()
	ln := guestListener(t, "127.0.0.1:0")
	a := startAgent(t, e.joinListening(t, name, ln), listenAgent(ln))
	a.waitConnected(t)
	return a, ln.Addr().String()
}

func listenAgent(ln net.Listener) func(*relay.AgentConfig) {
	return func(c *relay.AgentConfig) { c.HostListener = ln }
}

func TestReverseRelays(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	a, addr := h.listeningGuest(t, "vm1")
	c := a.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("rejected: %+v", r)
	}
	echo(t, c, "establish")
	st := h.host.Status()
	if len(st) != 1 || !st[0].Connected || st[0].Dial != addr || st[0].Open != 1 {
		t.Errorf("host status %+v, want vm1 connected, dialed at %s, 1 open", st, addr)
	}
	if !strings.Contains(h.log.String(), "guest paired") || !strings.Contains(a.log.String(), "waiting for the host to connect") {
		t.Errorf("logs lack the pairing or the wait:\nhost:\n%s\nagent:\n%s", h.log, a.log)
	}
}

// The agent goes away and comes back on the same address: the host keeps
// redialing, and says so in its status meanwhile.
func TestReverseAgentRestart(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	ln := guestListener(t, "127.0.0.1:0")
	creds := h.joinListening(t, "vm1", ln)
	a := startAgent(t, creds, listenAgent(ln))
	a.waitConnected(t)
	c := a.dial(t)
	versionExchange(t, c, pcsc.V44)

	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	a.done <- nil // for the cleanup
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read through a stopped agent succeeded")
	}
	waitFor(t, func() bool {
		st := h.host.Status()
		return len(st) == 1 && !st[0].Connected && st[0].Dialing == "backing-off" && st[0].LastError != ""
	})
	waitFor(t, func() bool { return fake.Conns() == 0 })

	b := startAgent(t, creds, listenAgent(guestListener(t, creds.Listen)))
	b.waitConnected(t)
	c = b.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("after reconnect: %+v", r)
	}
	echo(t, c, "back")
	if st := h.host.Status(); st[0].Sessions != 2 {
		t.Errorf("status %+v, want 2 sessions", st)
	}
}

// A host restart: the new host dials the agent, which takes the new session.
func TestReverseHostRestart(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	a, _ := h.listeningGuest(t, "vm1")
	h.stop(t)
	waitFor(t, func() bool { return !a.agent.Connected() })
	if _, err := a.agent.Dial(context.Background()); !errors.Is(err, relay.ErrNotConnected) {
		t.Errorf("dial while the host is away: %v, want ErrNotConnected", err)
	}
	h.start(t)
	a.waitConnected(t)
	c := a.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("after the host came back: %+v", r)
	}
	if !strings.Contains(a.log.String(), "waiting for the host to reconnect") {
		t.Errorf("agent log:\n%s", a.log)
	}
}

// Revoking a dialed guest cuts its session and stops the dialing.
func TestReverseRevoke(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	a, _ := h.listeningGuest(t, "vm1")
	c := a.dial(t)
	versionExchange(t, c, pcsc.V44)
	if err := h.state.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read through a revoked guest's session succeeded")
	}
	waitFor(t, func() bool { return !a.agent.Connected() })
	time.Sleep(300 * time.Millisecond) // several backoffs: no new session
	if a.agent.Connected() {
		t.Error("the host dialed a revoked guest again")
	}
	if !strings.Contains(h.log.String(), "reason=revoked") && !strings.Contains(h.log.String(), `reason="revoked, paired again`) {
		t.Errorf("host log:\n%s", h.log)
	}
}

// Whoever connects to the agent's listener without the host's key learns
// nothing, not even the guest's certificate, and does not disturb the
// session with the real host.
func TestReverseImpostorHost(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	a, addr := h.listeningGuest(t, "vm1")

	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"cardshare-relay/1"}}
	for range 3 {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		conn := tls.Server(raw, cfg)
		err = conn.Handshake()
		if err == nil {
			t.Error("the agent completed a handshake with an impostor host")
		}
		if certs := conn.ConnectionState().PeerCertificates; len(certs) != 0 {
			t.Error("the agent sent its certificate to an impostor host")
		}
		raw.Close()
	}
	// Garbage and silence cost a handshake slot each, for a while.
	g, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	g.Close()

	c := a.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("after the impostors: %+v", r)
	}
	waitFor(t, func() bool { return strings.Contains(a.log.String(), "refused connection") })
}

// A host that dials an address where another guest's agent (or anything
// else) listens refuses it, and keeps trying.
func TestReverseWrongGuestAtAddress(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, fastDial)
	ln1 := guestListener(t, "127.0.0.1:0")
	vm1 := h.joinListening(t, "vm1", ln1)
	ln2 := guestListener(t, "127.0.0.1:0")
	vm2 := h.joinListening(t, "vm2", ln2)
	// vm2's agent answers at vm1's address.
	ln1.Close()
	a := startAgent(t, vm2, listenAgent(guestListener(t, vm1.Listen)))
	waitFor(t, func() bool {
		for _, g := range h.host.Status() {
			if g.Name == "vm1" && strings.Contains(g.LastError, "not the guest paired there") {
				return true
			}
		}
		return false
	})
	if a.agent.Connected() {
		// It may have connected through its own address (ln2, closed
		// by nobody): only as vm2.
		for _, g := range h.host.Status() {
			if g.Name == "vm1" && g.Connected {
				t.Error("vm2's agent was taken for vm1")
			}
		}
	}
}

// JoinListening waits through connections that are not the host.
func TestJoinListeningIgnoresOthers(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, func(c *relay.HostConfig) {
		c.MinBackoff, c.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond
	})
	ln := guestListener(t, "127.0.0.1:0")
	tok, err := h.state.PairWith("vm1", trust.PairOptions{Dial: ln.Addr().String()}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A scanner comes first.
	g, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("\x16\x03\x01\x00\x00garbage"))
	g.Close()
	creds, err := relay.JoinListening(context.Background(), ln, tok, &relay.JoinConfig{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if creds.Guest != "vm1" {
		t.Errorf("joined as %q", creds.Guest)
	}
	guests, err := h.state.Guests()
	if err != nil || len(guests) != 1 || guests[0].Dial != ln.Addr().String() {
		t.Errorf("guests %+v, %v: want vm1 dialed at %s", guests, err, ln.Addr())
	}

	// A token for another host never pairs: the wait ends with the reason.
	other := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	wrong, err := other.state.Pair("vm9", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln2 := guestListener(t, "127.0.0.1:0")
	if _, err := h.state.PairWith("vm3", trust.PairOptions{Dial: ln2.Addr().String()}, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = relay.JoinListening(context.Background(), ln2, wrong, &relay.JoinConfig{Timeout: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "did not connect") || !errors.Is(err, trust.ErrHostKeyMismatch) {
		t.Errorf("join with another host's token: %v, want a timeout naming the key mismatch", err)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"10.0.0.5:7744", "[::1]:7744", "vm1.lan:7744", "vsock://3:7744"} {
		if err := relay.CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ":7744", "10.0.0.5", "10.0.0.5:0", "10.0.0.5:http", "vsock://:7744", "vsock://x:1"} {
		if err := relay.CheckAddr(bad); !errors.Is(err, relay.ErrBadAddr) {
			t.Errorf("CheckAddr(%q) = %v, want ErrBadAddr", bad, err)
		}
	}
}
