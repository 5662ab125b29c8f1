package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/relay/trust"
)

// TestPolicyRealPCSCD runs the reader policy end to end: the real pcscd
// with vpcd's two readers, bridge.Serve with readers: ["Virtual PCD 00 01"]
// and an audit log, and the C client on the real libpcsclite as the guest
// program.
func TestPolicyRealPCSCD(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	card := p.InsertCardIn(t, testenv.VPCDSecondReader)
	d, err := pcsc.Probe(context.Background(), p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if d.Readers != pcsc.DefaultSlots {
		t.Errorf("probe measured %d reader slots, want %d", d.Readers, pcsc.DefaultSlots)
	}
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "guest.comm")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	log := new(logtest.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: p.Socket}.Dial, &bridge.Config{
			Logger: logtest.New(t, log, slog.LevelInfo),
			Daemon: d,
			Policy: &pcsc.Policy{Readers: []string{testenv.VPCDSecondReader}},
			Audit:  true,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	bin := testenv.BuildClient(t)

	out, err := testenv.RunClient(t, bin, socket, "list")
	if err != nil || out != testenv.VPCDSecondReader+"\n" {
		t.Fatalf("list through the policy: %q, %v", out, err)
	}
	_, err = testenv.RunClient(t, bin, socket, "-r", testenv.VPCDReader, "hello")
	if err == nil || !strings.Contains(err.Error(), "SCardConnect") || !strings.Contains(err.Error(), "0x80100009") {
		t.Fatalf("hello on the hidden reader: %v, want SCardConnect failing with SCARD_E_UNKNOWN_READER", err)
	}
	out, err = testenv.RunClient(t, bin, socket, "-r", testenv.VPCDSecondReader, "hello")
	if err != nil || !strings.Contains(out, "response: Hello world!") {
		t.Fatalf("hello on the visible reader: %q, %v", out, err)
	}

	// A blocking wait on the visible reader: a card in the hidden reader
	// wakes the program's libpcsclite (events name no reader) but is no
	// change to it; a card in the visible reader is.
	p.RemoveCard(t, card)
	w := startPolicyWaiter(t, bin, socket, testenv.VPCDSecondReader)
	if !strings.HasPrefix(w.first, "waiting: EMPTY") {
		t.Fatalf("waiter started with %q", w.first)
	}
	p.InsertCardIn(t, testenv.VPCDReader)
	select {
	case err := <-w.done:
		t.Fatalf("the waiter ended on a card in the hidden reader: %v, %s", err, w.out.String())
	case <-time.After(time.Second):
	}
	p.InsertCardIn(t, testenv.VPCDSecondReader)
	select {
	case err := <-w.done:
		if err != nil || !strings.Contains(w.out.String(), "PRESENT") {
			t.Fatalf("waiter: %v, %q", err, w.out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter did not see the card in the visible reader")
	}

	logs := log.String()
	for _, want := range [][]string{
		{`msg="refused guest call"`, "cmd=SCARD_CONNECT", `reader="Virtual PCD 00 00"`, "rv=0x80100009"},
		{`msg="pcsc call"`, "cmd=SCARD_TRANSMIT", `reader="Virtual PCD 00 01"`, "rv=0x00000000", "req_bytes=", "reply_bytes=", "duration="},
		{`msg="pcsc event"`, "cmd=CMD_WAIT_READER_STATE_CHANGE", "rv=0x00000000"},
	} {
		if !hasLine(logs, want...) {
			t.Errorf("no log line has all of %q", want)
		}
	}
	if strings.Contains(logs, "Hello world") || strings.Contains(logs, "48656c6c6f") {
		t.Errorf("payload in the log")
	}
	if t.Failed() {
		t.Logf("relay log:\n%s", logs)
	}
}

// hasLine reports whether a line of log holds every part.
func hasLine(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

type policyWaiter struct {
	first string
	out   *bytes.Buffer
	done  chan error
}

// startPolicyWaiter runs the client's wait mode on reader and returns once
// it printed its first state.
func startPolicyWaiter(t *testing.T, bin, socket, reader string) *policyWaiter {
	t.Helper()
	cmd := testenv.ClientCommand(t.Context(), bin, socket, "-r", reader, "wait", "60")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(pipe)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("waiter: %v; %s", err, &stderr)
	}
	w := &policyWaiter{first: first, out: new(bytes.Buffer), done: make(chan error, 1)}
	go func() {
		io.Copy(w.out, r)
		w.done <- cmd.Wait()
	}()
	return w
}

// TestRelayGuestPolicy pairs a relay guest with a reader policy and changes
// it while the guest is attached, with the real pcscd and libpcsclite: the
// guest sees only its reader, and after SetPolicy the host cuts its session
// and the agent's next one serves the new policy.
func TestRelayGuestPolicy(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, nil)
	creds := h.joinWith(t, "vm1", trust.PairOptions{
		Policy: &pcsc.Policy{Readers: []string{testenv.VPCDSecondReader}, DenyControl: true},
	})
	a := startAgent(t, creds, nil)
	a.waitConnected(t)
	bin := testenv.BuildClient(t)
	list := func() string {
		out, err := testenv.RunClient(t, bin, a.socket, "list")
		if err != nil {
			return err.Error()
		}
		return out
	}
	if out := list(); out != testenv.VPCDSecondReader+"\n" {
		t.Fatalf("list under the policy: %q", out)
	}
	_, err := testenv.RunClient(t, bin, a.socket, "-r", testenv.VPCDReader, "hello")
	if err == nil || !strings.Contains(err.Error(), "0x80100009") {
		t.Fatalf("hello on the hidden reader: %v, want SCARD_E_UNKNOWN_READER", err)
	}
	if !strings.Contains(h.log.String(), "deny_control=true") {
		t.Errorf("host did not log the guest's policy:\n%s", h.log)
	}

	if err := h.state.SetPolicy("vm1", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for out := list(); out != testenv.VPCDReader+"\n"+testenv.VPCDSecondReader+"\n"; out = list() {
		if time.Now().After(deadline) {
			t.Fatalf("list after the policy was lifted: %q\nhost log:\n%s", out, h.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustHello(t, a.socket)
	if !strings.Contains(h.log.String(), `reason="reader policy changed"`) {
		t.Errorf("host log lacks why it cut the session:\n%s", h.log)
	}
}

// The same for a guest that the host dials: after SetPolicy the host cuts
// the session and dials again, and the new session serves the new policy.
func TestReverseRelayGuestPolicy(t *testing.T) {
	t.Parallel()
	_, h := realHost(t, fastDial)
	a, _ := h.listeningGuest(t, "vm1")
	mustHello(t, a.socket)
	if err := h.state.SetPolicy("vm1", &pcsc.Policy{Readers: []string{testenv.VPCDSecondReader}}); err != nil {
		t.Fatal(err)
	}
	bin := testenv.BuildClient(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := testenv.RunClient(t, bin, a.socket, "list")
		if err == nil && out == testenv.VPCDSecondReader+"\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list under the new policy: %q, %v\nhost log:\n%s", out, err, h.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(h.log.String(), `reason="reader policy changed"`) {
		t.Errorf("host log lacks why it cut the session:\n%s", h.log)
	}
}
