package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/mux"
	"github.com/cardshare/cardshare/relay/trust"
)

// Relay mode over loopback TCP with the fake daemon: host, pairing and agent.
// e2e_test.go runs the same with the real pcscd and libpcsclite.

// fastMux notices a dead peer within about half a second.
func fastMux() *mux.Config {
	return &mux.Config{KeepaliveInterval: 100 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
}

type hostEnv struct {
	state  *trust.HostState
	host   *relay.Host
	addr   string
	log    *logtest.Buffer
	dial   bridge.DialFunc
	mod    func(*relay.HostConfig)
	cancel context.CancelFunc
	done   chan error
}

// startHost serves relay mode on a loopback port, relaying to dial.
func startHost(t *testing.T, dial bridge.DialFunc, mod func(*relay.HostConfig)) *hostEnv {
	t.Helper()
	state, err := trust.OpenHostState(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	e := &hostEnv{state: state, addr: "127.0.0.1:0", log: new(logtest.Buffer), dial: dial, mod: mod}
	e.start(t)
	return e
}

// start serves (again) on e.addr with a new Host.
func (e *hostEnv) start(t *testing.T) {
	t.Helper()
	ln, err := relay.ListenAddr(context.Background(), e.addr)
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	cfg := &relay.HostConfig{
		Logger:           logtest.New(t, e.log, slog.LevelDebug),
		Dial:             e.dial,
		Relay:            bridge.Config{Daemon: pcsc.Daemon{Version: pcsc.V44}, OpeningTimeout: 2 * time.Second},
		Mux:              fastMux(),
		HandshakeTimeout: 2 * time.Second,
		PollInterval:     20 * time.Millisecond,
	}
	if e.mod != nil {
		e.mod(cfg)
	}
	e.host = relay.NewHost(e.state, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.cancel, e.done = cancel, done
	go func() { done <- e.host.Serve(ctx, ln) }()
	t.Cleanup(func() { e.stop(t) })
}

// stop stops the host; its connections end as a host process's would.
func (e *hostEnv) stop(t *testing.T) {
	t.Helper()
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Host.Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Host.Serve did not return 10 s after cancel")
	}
}

// join pairs a new guest called name.
func (e *hostEnv) join(t *testing.T, name string) *trust.Credentials {
	t.Helper()
	return e.joinWith(t, name, trust.PairOptions{})
}

// joinWith is join with pairing options.
func (e *hostEnv) joinWith(t *testing.T, name string, o trust.PairOptions) *trust.Credentials {
	t.Helper()
	tok, err := e.state.PairWith(name, o, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := relay.Join(context.Background(), e.addr, tok, nil)
	if err != nil {
		t.Fatalf("join: %v\nhost log:\n%s", err, e.log)
	}
	if creds.Guest != name {
		t.Fatalf("joined as %q, want %q", creds.Guest, name)
	}
	return creds
}

type agentEnv struct {
	agent  *relay.Agent
	socket string
	log    *logtest.Buffer
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs an agent with creds on a guest socket of its own.
func startAgent(t *testing.T, creds *trust.Credentials, mod func(*relay.AgentConfig)) *agentEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &agentEnv{socket: filepath.Join(dir, "g", "pcscd.comm"), log: new(logtest.Buffer), done: make(chan error, 1)}
	ln, err := unixsock.ListenGuestSocket(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &relay.AgentConfig{
		Logger:         logtest.New(t, e.log, slog.LevelDebug),
		Relay:          bridge.Config{OpeningTimeout: 2 * time.Second},
		Mux:            fastMux(),
		ConnectTimeout: 2 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
	}
	if mod != nil {
		mod(cfg)
	}
	e.agent, err = relay.NewAgent(creds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, e.cancel = context.WithCancel(context.Background())
	go func() { e.done <- e.agent.Run(ctx, ln) }()
	t.Cleanup(func() {
		e.cancel()
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			t.Error("Agent.Run did not return 10 s after cancel")
		}
	})
	return e
}

func (e *agentEnv) waitConnected(t *testing.T) {
	t.Helper()
	waitFor(t, e.agent.Connected)
}

func (e *agentEnv) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// echo checks that a relayed connection to the fake daemon carries bytes.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func TestRelayModeRelays(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)

	var conns []net.Conn
	for range 5 {
		c := a.dial(t)
		if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
			t.Fatalf("rejected: %+v", r)
		}
		echo(t, c, "establish")
		conns = append(conns, c)
	}
	// A 64 KiB message, as an extended APDU, crosses in one piece.
	echo(t, conns[0], strings.Repeat("x", 8+32+65536))
	st := h.host.Status()
	if len(st) != 1 || st[0].Name != "vm1" || !st[0].Connected || st[0].Open != 5 {
		t.Errorf("host status %+v, want vm1 connected with 5 open", st)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, func() bool { return fake.Conns() == 0 && h.host.Status()[0].Open == 0 })
	if got := h.host.Status()[0].Connections; got != 5 {
		t.Errorf("host counted %d connections, want 5", got)
	}
	for _, log := range []string{h.log.String(), a.log.String()} {
		if strings.Contains(log, "establish") {
			t.Errorf("payload bytes in the log:\n%s", log)
		}
	}
}

// Both ends check the opening: a guest program that does not speak
// pcsc-lite never reaches the host, and the host's relay checks again
// whatever a guest sends on a stream.
func TestRelayModeChecksOpeningOnBothEnds(t *testing.T) {
	// The host relay is not told the daemon's version, so it cannot
	// translate (proxy_test.go covers that): the rejection passes through.
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V45})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)

	c := a.dial(t)
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Errorf("garbage opening answered %q", got)
	}
	if h.host.Status()[0].Connections != 0 {
		t.Errorf("a bad opening reached the host")
	}

	// A 4.4 client against a strict 4.5 daemon: both logs say why.
	c = a.dial(t)
	if r := versionExchange(t, c, pcsc.V44); r.Accepted() {
		t.Fatal("4.4 accepted by a strict 4.5 daemon")
	}
	c.Close()
	for name, log := range map[string]*logtest.Buffer{"host": h.log, "agent": a.log} {
		waitFor(t, func() bool { return strings.Contains(log.String(), "rejected by host pcscd") })
		if !strings.Contains(log.String(), "hint=") {
			t.Errorf("%s log lacks the hint:\n%s", name, log)
		}
	}

	// A stream that skips the agent's check, as a hostile guest could
	// open, meets the host's.
	s, err := a.agent.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	s.Write([]byte{12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if got, _ := io.ReadAll(s); len(got) != 0 {
		t.Errorf("host answered a bad opening with %q", got)
	}
	waitFor(t, func() bool { return strings.Contains(h.log.String(), "does not start with CMD_VERSION") })
	if fake.Conns() != 0 {
		t.Errorf("a bad opening reached pcscd")
	}
}

// selfSigned returns a certificate for a new key that nobody paired.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestPairingRefusals(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	ctx := context.Background()

	good, err := h.state.Pair("vm1", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := good
	wrong.Secret[0] ^= 1
	expired, err := h.state.Pair("vm2", time.Millisecond, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	other, err := trust.OpenHostState(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherHost, err := other.Pair("vm1", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		tok  trust.Token
		want error
	}{
		{"wrong secret", wrong, trust.ErrPairingRefused},
		{"expired", expired, trust.ErrPairingRefused},
		{"another host's token", otherHost, trust.ErrHostKeyMismatch},
	} {
		if _, err := relay.Join(ctx, h.addr, tt.tok, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := relay.Join(ctx, h.addr, good, nil); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if _, err := relay.Join(ctx, h.addr, good, nil); !errors.Is(err, trust.ErrPairingRefused) {
		t.Errorf("token used twice: %v, want ErrPairingRefused", err)
	}
	// The host log says why; the guests were told nothing more.
	for _, want := range []string{"no pending pairing has that secret", "the token for vm2 expired", "guest paired"} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("host log lacks %q:\n%s", want, h.log)
		}
	}
	guests, err := h.state.Guests()
	if err != nil || len(guests) != 1 || guests[0].Name != "vm1" {
		t.Errorf("guests %+v, %v; want vm1 alone", guests, err)
	}
}

// A guest whose key the host does not know (never paired, or paired with
// another host) is refused, and the agent gives up instead of retrying.
func TestUnknownGuestRefused(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	creds := h.join(t, "vm1")
	other := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	stranger := other.join(t, "vm1")
	stranger.Host, stranger.HostKey = h.addr, creds.HostKey

	a := startAgent(t, stranger, nil)
	select {
	case err := <-a.done:
		if !errors.Is(err, relay.ErrGuestRefused) {
			t.Fatalf("agent: %v, want ErrGuestRefused", err)
		}
		a.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("agent still retrying 10 s after the host refused it")
	}
	waitFor(t, func() bool { return strings.Contains(h.log.String(), "not paired") })
}

// While the guest list cannot be read, Status still answers, and a guest
// whose session goes on is not shown as revoked: an unreadable file is no
// revocation.
func TestStatusWithUnreadableGuestList(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)
	if err := os.WriteFile(filepath.Join(h.state.Dir(), "guests.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := h.host.Status()
	if len(st) != 1 || st[0].Name != "vm1" || !st[0].Connected || st[0].Revoked {
		t.Errorf("status %+v, want vm1 connected and not revoked", st)
	}
}

// Revoking a guest cuts it off at once: open connections end, pcscd sees
// them closed, and the agent's reconnect is refused.
func TestRevokeCutsOff(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	b := startAgent(t, h.join(t, "vm2"), nil)
	a.waitConnected(t)
	b.waitConnected(t)
	ca, cb := a.dial(t), b.dial(t)
	versionExchange(t, ca, pcsc.V44)
	versionExchange(t, cb, pcsc.V44)
	waitFor(t, func() bool { return fake.Conns() == 2 })

	start := time.Now()
	if err := h.state.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The open connection ends while it waits for a reply.
	if _, err := ca.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a revoked guest's connection succeeded")
	}
	t.Logf("cut off after %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, func() bool { return fake.Conns() == 1 })
	select {
	case err := <-a.done:
		if !errors.Is(err, relay.ErrGuestRefused) {
			t.Errorf("agent: %v, want ErrGuestRefused", err)
		}
		a.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("revoked agent still running")
	}
	// The other guest is untouched.
	echo(t, cb, "still here")
	if !strings.Contains(h.log.String(), "reason=revoked") {
		t.Errorf("host log does not say the guest was revoked:\n%s", h.log)
	}
}

// While the agent has no session, guest programs get "Service not
// available" at once instead of waiting.
func TestAgentFailsFastWhileDown(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	creds := h.join(t, "vm1")
	h.stop(t)
	a := startAgent(t, creds, nil)
	start := time.Now()
	c := a.dial(t)
	r := versionExchange(t, c, pcsc.V44)
	if r.RV != pcsc.ReturnNoService {
		t.Fatalf("rv %#x, want SCARD_E_NO_SERVICE", r.RV)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v", d)
	}
}

// The host goes away (a restart) while a connection waits; the connection
// ends with an error, the agent reconnects when the host is back, and new
// connections work.
func TestHostRestartAgentReconnects(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)
	c := a.dial(t)
	versionExchange(t, c, pcsc.V44)

	h.stop(t)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read through a stopped host succeeded")
	}
	waitFor(t, func() bool { return !a.agent.Connected() })
	waitFor(t, func() bool { return fake.Conns() == 0 })
	time.Sleep(100 * time.Millisecond) // a few failed attempts
	h.start(t)
	a.waitConnected(t)
	c = a.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("after reconnect: %+v", r)
	}
	echo(t, c, "back")
	for _, want := range []string{"connection to host lost", "cannot reach host", "connected to host"} {
		if !strings.Contains(a.log.String(), want) {
			t.Errorf("agent log lacks %q:\n%s", want, a.log)
		}
	}
}

// recorder relays a TCP connection and keeps what the client sent.
func recorder(t *testing.T, target string) (addr string, sent func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var buf bytes.Buffer
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
			go func() { io.Copy(c, s); c.Close() }()
			go func() {
				b := make([]byte, 4096)
				for {
					n, err := c.Read(b)
					mu.Lock()
					buf.Write(b[:n])
					mu.Unlock()
					s.Write(b[:n])
					if err != nil {
						s.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(buf.Bytes())
	}
}

// Garbage, replays, half handshakes and floods on the host's port: each is
// refused and logged, none reaches pcscd, and the host goes on serving.
func TestHostSurvivesBadPeers(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, func(c *relay.HostConfig) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.MaxHandshakes = 4
	})
	creds := h.join(t, "vm1")

	// Record a real session, to replay it.
	recAddr, sent := recorder(t, h.addr)
	viaRec := *creds
	viaRec.Host = recAddr
	a := startAgent(t, &viaRec, nil)
	a.waitConnected(t)
	c := a.dial(t)
	versionExchange(t, c, pcsc.V44)
	echo(t, c, "recorded")
	c.Close()
	a.cancel()
	<-a.done
	a.done <- nil
	waitFor(t, func() bool { return fake.Conns() == 0 })
	replay := sent()

	send := func(b []byte) []byte {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(b)
		got, _ := io.ReadAll(c)
		return got
	}
	send(replay)
	send([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	send(bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, 1000))
	send(nil) // silent until the handshake timeout

	// TLS without a client key, and TLS with a key nobody paired.
	for _, certs := range [][]tls.Certificate{nil, {selfSigned(t)}} {
		tc, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"cardshare-relay/1"}, Certificates: certs})
		if err == nil {
			// A key the host's list does not know is told so, and
			// nothing more.
			var hello trust.Hello
			if hello, err = trust.ReadHello(tc); err == nil && hello.Refused == "" {
				t.Errorf("TLS connection with an unpaired key got %+v", hello)
			}
			if _, err := tc.Read(make([]byte, 1)); err == nil {
				t.Error("TLS connection without a paired key was served")
			}
			tc.Close()
		}
	}

	// More silent connections than MaxHandshakes: the extra ones are
	// closed at once.
	var silent []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	closedEarly := 0
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closedEarly++
		}
		c.Close()
	}
	if closedEarly < 4 {
		t.Errorf("%d of 8 silent connections closed at once, want at least 4", closedEarly)
	}

	if fake.Conns() != 0 || h.host.Status()[0].Connections != 1 {
		t.Errorf("bad peers reached pcscd")
	}
	if !strings.Contains(h.log.String(), "refused connection") {
		t.Errorf("host log lacks refusals:\n%s", h.log)
	}
	// The host still serves its guest.
	time.Sleep(300 * time.Millisecond)
	b := startAgent(t, creds, nil)
	b.waitConnected(t)
	c = b.dial(t)
	if r := versionExchange(t, c, pcsc.V44); !r.Accepted() {
		t.Fatalf("guest after the bad peers: %+v", r)
	}
}

// A second connection with the same key replaces the first: the guest came
// back before the host noticed it gone.
func TestReconnectReplacesSession(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, nil)
	creds := h.join(t, "vm1")
	a := startAgent(t, creds, nil)
	a.waitConnected(t)
	b := startAgent(t, creds, nil)
	b.waitConnected(t)
	waitFor(t, func() bool { return strings.Contains(h.log.String(), "replaced by a new connection") })
	if st := h.host.Status(); len(st) != 1 || st[0].Sessions < 2 {
		t.Errorf("status %+v, want one guest with two sessions", st)
	}
}

// Reload (relay serve's SIGHUP) reads the guest list at once: a revocation
// applies without waiting for the next poll.
func TestReloadAppliesAtOnce(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	h := startHost(t, hostpcsc.Socket{Path: fake.Socket}.Dial, func(c *relay.HostConfig) { c.PollInterval = time.Hour })
	a := startAgent(t, h.join(t, "vm1"), nil)
	a.waitConnected(t)
	ca := a.dial(t)
	versionExchange(t, ca, pcsc.V44)
	if err := h.state.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	h.host.Reload()
	h.host.Reload() // a second request while one is pending is dropped
	ca.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ca.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a revoked guest's connection after Reload: %v, want it cut off", err)
	}
	waitFor(t, func() bool { return strings.Contains(h.log.String(), "guest list reloaded") })
}
