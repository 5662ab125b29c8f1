package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/relay"
)

// End-to-end tests of relay mode: the real pcscd with the Go test card in
// vpcd, a host and an agent in this process over loopback TCP, and a C
// client on the real libpcsclite as the guest program.

// realHost starts pcscd with a card and a relay host in front of it.
func realHost(t *testing.T, mod func(*relay.HostConfig)) (*testenv.PCSCD, *hostEnv) {
	t.Helper()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	d, err := pcsc.Probe(context.Background(), p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	h := startHost(t, hostpcsc.Socket{Path: p.Socket}.Dial, func(c *relay.HostConfig) {
		c.Relay.Daemon = d
		if mod != nil {
			mod(c)
		}
	})
	return p, h
}

func mustHello(t *testing.T, socket string) {
	t.Helper()
	out, err := testenv.RunClient(t, testenv.BuildClient(t), socket, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "response: Hello world!") || !strings.Contains(out, "sw: 9000") {
		t.Fatalf("client output:\n%s", out)
	}
}

func TestRelayHelloWorld(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, nil)
	client := pcsc.Client{Version: pcsc.V44}
	a := startAgent(t, h.join(t, "vm1"), func(c *relay.AgentConfig) { c.Client = &client })
	a.waitConnected(t)
	mustHello(t, a.socket)
	out, err := testenv.RunClient(t, testenv.BuildClient(t), a.socket, "list")
	if err != nil || !strings.Contains(out, testenv.VPCDReader) {
		t.Fatalf("list: %q, %v", out, err)
	}
	out, err = testenv.RunClient(t, testenv.BuildClient(t), a.socket, "bench", "200")
	if err != nil {
		t.Fatal(err)
	}
	b, err := testenv.ParseBench(out)
	if err != nil {
		t.Fatal(err)
	}
	// A leg with Nagle on stalls nearly every round trip 40 ms; a loaded
	// test machine stalls a few. The benchmark measures this properly.
	if b.Over10ms > b.Count/10 {
		t.Errorf("%d of %d round trips over 10 ms (Nagle on a TCP leg?): %v", b.Over10ms, b.Count, b)
	}
	t.Logf("through the relay: %v", b)
	if !strings.Contains(a.log.String(), "compatible with host pcscd") {
		t.Errorf("agent did not compare its libpcsclite with the host pcscd:\n%s", a.log)
	}
}

// cutProxy relays TCP connections to target. Cut makes the connections
// open at that moment swallow everything without closing, as a peer that
// vanished (VM paused, host frozen, cable pulled); connections made later
// work, as after the peer came back.
type cutProxy struct {
	addr  string
	mu    sync.Mutex
	conns []*atomic.Bool // the cut flag of each connection so far
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &cutProxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			cut := new(atomic.Bool)
			p.mu.Lock()
			p.conns = append(p.conns, cut)
			p.mu.Unlock()
			go cutCopy(c, s, cut)
			go cutCopy(s, c, cut)
		}
	}()
	return p
}

// Cut freezes the connections open now.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Store(true)
	}
}

// cutCopy copies src to dst until src ends, dropping what comes once cut.
// A cut connection closes nothing on its own: only when one end gives up
// and closes does the proxy close the other, and free its descriptors.
func cutCopy(dst, src net.Conn, cut *atomic.Bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !cut.Load() {
			dst.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// waiter runs the client's wait mode (SCardGetStatusChange for 60 s) on
// socket and returns once it waits.
type waiter struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error
}

func startWaiter(t *testing.T, socket string) *waiter {
	t.Helper()
	w := &waiter{done: make(chan error, 1)}
	w.cmd = testenv.ClientCommand(t.Context(), testenv.BuildClient(t), socket, "wait", "60")
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "waiting: ") {
		t.Fatalf("client did not start waiting: %q, %v; %s", line, err, &w.stderr)
	}
	go func() { io.Copy(io.Discard, out); w.done <- w.cmd.Wait() }()
	return w
}

// mustFail checks that the waiting client ends with a PC/SC error within
// limit, instead of hanging or seeing a change.
func (w *waiter) mustFail(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case err := <-w.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("client: %v (stderr %q), want exit status 1", err, &w.stderr)
		}
		t.Logf("client: %s", strings.TrimSpace(w.stderr.String()))
	case <-time.After(limit):
		t.Fatalf("client still waiting %v after the host went away", limit)
	}
}

// The host vanishes without closing anything while a guest program waits
// in SCardGetStatusChange: the keepalive notices, and the program gets an
// error instead of hanging (hashicorp/yamux#142). The host side ends the
// pcscd connection too, so pcscd frees what the program held.
func TestRelayDeadPeerDuringWait(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, nil)
	creds := h.join(t, "vm1")
	proxy := startCutProxy(t, h.addr)
	creds.Host = proxy.addr
	a := startAgent(t, creds, nil)
	a.waitConnected(t)
	w := startWaiter(t, a.socket)
	waitFor(t, func() bool { return h.host.Status()[0].Open == 1 })

	proxy.Cut()
	w.mustFail(t, 5*time.Second)
	waitFor(t, func() bool { st := h.host.Status()[0]; return !st.Connected && st.Open == 0 })
}

// The host stops mid-wait (a host restart): the program gets an error at
// once; the agent reconnects when the host is back, and cards work again.
func TestRelayHostRestartDuringWait(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)
	w := startWaiter(t, a.socket)

	h.stop(t)
	w.mustFail(t, 2*time.Second)
	// While the host is down, programs fail fast with "Service not available".
	waitFor(t, func() bool { return !a.agent.Connected() })
	_, err := testenv.RunClient(t, testenv.BuildClient(t), a.socket, "list")
	var ce *testenv.ClientError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "0x8010001D") {
		t.Errorf("client while the host is down: %v, want SCARD_E_NO_SERVICE", err)
	}
	h.start(t)
	a.waitConnected(t)
	mustHello(t, a.socket)
}

// Revoking a guest ends its programs' waits at once.
func TestRelayRevokeDuringWait(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)
	w := startWaiter(t, a.socket)
	if err := h.state.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	w.mustFail(t, 2*time.Second)
	if err := <-a.done; !errors.Is(err, relay.ErrGuestRefused) {
		t.Errorf("agent: %v, want ErrGuestRefused", err)
	}
	a.done <- nil
}

// The reverse direction end to end: the host dials the agent.
func TestReverseRelayHelloWorld(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, fastDial)
	a, _ := h.listeningGuest(t, "vm1")
	mustHello(t, a.socket)
	out, err := testenv.RunClient(t, testenv.BuildClient(t), a.socket, "list")
	if err != nil || !strings.Contains(out, testenv.VPCDReader) {
		t.Fatalf("list: %q, %v", out, err)
	}
}

// The agent that the host dialed vanishes mid-wait: the program gets an
// error, the host's side of the session ends and pcscd is freed.
func TestReverseRelayDeadPeerDuringWait(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, fastDial)
	ln := guestListener(t, "127.0.0.1:0")
	proxy := startCutProxy(t, ln.Addr().String())
	a := startAgent(t, h.joinListeningVia(t, "vm1", ln, proxy.addr), listenAgent(ln))
	a.waitConnected(t)
	w := startWaiter(t, a.socket)
	waitFor(t, func() bool { return h.host.Status()[0].Open == 1 })

	proxy.Cut()
	w.mustFail(t, 5*time.Second)
	waitFor(t, func() bool { st := h.host.Status()[0]; return !st.Connected && st.Open == 0 })
}
