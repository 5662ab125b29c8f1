package relay_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/relay"
)

// Fault injection in relay mode with real parts, as forward's fault tests do
// for SSH mode: pcscd with the test card, host and agent in this process, the
// real libpcsclite as the guest program. Each test ends the same way: the
// program got an error (never a hang), the relay came back on its own, a new
// program gets "Hello world!", and this process has no more goroutines or
// file descriptors than before the fault. Not parallel, so that the counts
// are the test's alone.

// transmitter runs the client's transmit loop in the background.
type transmitter struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan error
}

func startTransmitter(t *testing.T, socket string) *transmitter {
	t.Helper()
	tr := &transmitter{done: make(chan error, 1)}
	tr.cmd = testenv.ClientCommand(t.Context(), testenv.BuildClient(t), socket, "bench", "100000000")
	tr.cmd.Stderr = &tr.stderr
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tr.done <- tr.cmd.Wait() }()
	return tr
}

// mustFail checks that the program ends with a PC/SC error within limit.
func (tr *transmitter) mustFail(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case err := <-tr.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("client: %v (stderr %q), want a failure", err, &tr.stderr)
		}
		t.Logf("fault: client saw %s", strings.TrimSpace(tr.stderr.String()))
	case <-time.After(limit):
		t.Fatalf("client still running %v after the fault", limit)
	}
}

// faultCase sets up a host and an agent whose session runs through a
// cutProxy, in either direction, and returns the agent's guest socket and
// the proxy.
type faultCase struct {
	name  string
	setup func(t *testing.T, h *hostEnv) (*agentEnv, *cutProxy)
}

var faultCases = []faultCase{
	{"guest dials", func(t *testing.T, h *hostEnv) (*agentEnv, *cutProxy) {
		creds := h.join(t, "vm1")
		proxy := startCutProxy(t, h.addr)
		creds.Host = proxy.addr
		return startAgent(t, creds, nil), proxy
	}},
	{"host dials", func(t *testing.T, h *hostEnv) (*agentEnv, *cutProxy) {
		ln := guestListener(t, "127.0.0.1:0")
		proxy := startCutProxy(t, ln.Addr().String())
		return startAgent(t, h.joinListeningVia(t, "vm1", ln, proxy.addr), listenAgent(ln)), proxy
	}},
}

// The connection between host and agent dies silently in the middle of a
// transmit loop, in both directions of relay mode.
func TestRelayFaultPeerVanishesMidTransmit(t *testing.T) {
	for _, fc := range faultCases {
		t.Run(fc.name, func(t *testing.T) {
			_, h := realHost(t, fastDial)
			a, proxy := fc.setup(t, h)
			a.waitConnected(t)
			mustHello(t, a.socket)
			before := testenv.Snapshot(t)

			tr := startTransmitter(t, a.socket)
			waitFor(t, func() bool { return h.host.Status()[0].Open == 1 })
			time.Sleep(200 * time.Millisecond) // well into the loop
			start := time.Now()
			proxy.Cut()
			tr.mustFail(t, 5*time.Second)
			a.waitConnected(t)
			mustHello(t, a.socket)
			t.Logf("fault: relay back and hello world %v after the cut", time.Since(start).Round(time.Millisecond))
			waitFor(t, func() bool { return h.host.Status()[0].Open == 0 })
			testenv.CheckNoLeak(t, before)
		})
	}
}

// The host stops in the middle of a transmit loop and starts again: the
// program gets an error at once, the agent (or the new host) reconnects.
func TestRelayFaultHostRestartMidTransmit(t *testing.T) {
	for _, fc := range faultCases {
		t.Run(fc.name, func(t *testing.T) {
			_, h := realHost(t, fastDial)
			a, _ := fc.setup(t, h)
			a.waitConnected(t)
			mustHello(t, a.socket)
			before := testenv.Snapshot(t)

			tr := startTransmitter(t, a.socket)
			waitFor(t, func() bool { return h.host.Status()[0].Open == 1 })
			time.Sleep(200 * time.Millisecond)
			h.stop(t)
			tr.mustFail(t, 2*time.Second)
			waitFor(t, func() bool { return !a.agent.Connected() })
			h.start(t)
			a.waitConnected(t)
			mustHello(t, a.socket)
			testenv.CheckNoLeak(t, before)
		})
	}
}

// Garbage and strangers on the agent's listening port cost nothing that
// lasts, and the session with the host goes on.
func TestRelayFaultStrangersOnAgentPort(t *testing.T) {
	_, h := realHost(t, fastDial)
	a, addr := h.listeningGuest(t, "vm1")
	mustHello(t, a.socket)
	before := testenv.Snapshot(t)
	for range 20 {
		c, err := relay.DialAddr(t.Context(), addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x16\x03\x01\x02\x00garbage\r\n\r\n"))
		c.Close()
	}
	mustHello(t, a.socket)
	testenv.CheckNoLeak(t, before)
}
