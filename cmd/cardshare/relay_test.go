package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/testenv"
)

// background runs cardshare in-process until the test ends or stop is
// called, and returns its output so far on demand.
type background struct {
	out, err logtest.Buffer
	cancel   context.CancelFunc
	done     chan int
}

func runBackground(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan int, 1)}
	go func() { b.done <- run(ctx, args, strings.NewReader(""), &b.out, &b.err) }()
	t.Cleanup(func() { b.stop(t) })
	return b
}

// waitOut waits until stdout matches re and returns the first submatch.
func (b *background) waitOut(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := rx.FindStringSubmatch(b.out.String()); m != nil {
			return m[len(m)-1]
		}
		select {
		case code := <-b.done:
			b.done <- code
			t.Fatalf("exited %d before printing %q; stderr:\n%s", code, re, &b.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in stdout within 20 s:\n%s\nstderr:\n%s", re, &b.out, &b.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *background) stop(t *testing.T) int {
	t.Helper()
	b.cancel()
	select {
	case code := <-b.done:
		b.done <- code
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("cardshare did not stop 15 s after Ctrl-C")
		return -1
	}
}

// The whole relay workflow through the CLI: serve, pair, join, agent, a
// real libpcsclite client, revoke.
func TestCLIRelay(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	state := filepath.Join(t.TempDir(), "host")
	creds := filepath.Join(t.TempDir(), "guest", "credentials.json")
	sockDir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "g", "pcscd.comm")

	serve := runBackground(t, "relay", "serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--pcscd-socket", p.Socket,
		"--control-socket", filepath.Join(sockDir, "ctl", "relay.sock"), "--audit")
	addr := serve.waitOut(t, `relay: listening on (\S+)`)

	code, out, errs := cli(t, "", "relay", "pair", "--state-dir", state, "--control-socket", filepath.Join(sockDir, "ctl", "relay.sock"), "vm1")
	if code != 0 {
		t.Fatalf("pair: exit %d: %s", code, errs)
	}
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)
	// The running serve says where it listens: the join line is complete.
	// The token is typed at join's prompt, never on its command line.
	if want := "    cardshare relay join " + addr + "\n"; !strings.Contains(out, want) || strings.Contains(out, "join --token") {
		t.Errorf("pair output lacks %q:\n%s", want, out)
	}

	code, out, errs = cli(t, "", "relay", "join", "--credentials", creds, "--token", token, addr)
	if code != 0 || !strings.Contains(out, "as vm1") {
		t.Fatalf("join: exit %d\n%s%s", code, out, errs)
	}
	if fi, err := os.Stat(creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials: %v, %v; want mode 0600", fi.Mode(), err)
	}
	// The token worked once.
	if code, _, errs := cli(t, "", "relay", "join", "--credentials", creds+".2", "--token", token, addr); code != 1 ||
		!strings.Contains(errs, "host refused the pairing token") {
		t.Errorf("second join: exit %d: %s", code, errs)
	}

	agent := runBackground(t, "relay", "agent", "--credentials", creds, "--socket", sock)
	if got := agent.waitOut(t, `export PCSCLITE_CSOCK_NAME=(\S+)`); got != sock {
		t.Errorf("agent exports %s, want %s", got, sock)
	}
	mustHelloCLI(t, sock)

	// A reader policy set while the guest is attached applies at once:
	// the guest sees only the second reader.
	if code, out, errs := cli(t, "", "relay", "policy", "--state-dir", state, "--readers", testenv.VPCDSecondReader, "vm1"); code != 0 ||
		!strings.Contains(out, `vm1: reader policy: readers ["`+testenv.VPCDSecondReader+`"]`) {
		t.Fatalf("policy: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := cli(t, "", "relay", "list", "--state-dir", state); code != 0 || !strings.Contains(out, "reader policy: readers") ||
		!regexp.MustCompile(`(?m)^GUEST +KEY +STATE$`).MatchString(out) {
		t.Errorf("list: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := cli(t, "", "status", "--control-socket", filepath.Join(sockDir, "ctl", "relay.sock")); code != 0 ||
		!strings.Contains(out, `vm1: reader policy: readers ["`+testenv.VPCDSecondReader+`"], audit log`) {
		t.Errorf("status: exit %d: %s%s", code, out, errs)
	} else if !strings.Contains(out, "4.4 → 4.4") || strings.Contains(out, "- → ") {
		// The guest's own protocol, as the host saw it, not "-".
		t.Errorf("status does not show the guest's protocol:\n%s", out)
	}
	bin := testenv.BuildClient(t)
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, err := testenv.RunClient(t, bin, sock, "list")
		if err == nil && out == testenv.VPCDSecondReader+"\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readers through the policy: %q, %v\nserve:\n%s", out, err, &serve.err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if code, out, errs := cli(t, "", "relay", "revoke", "--state-dir", state, "vm1"); code != 0 || !strings.Contains(out, "revoked vm1") {
		t.Fatalf("revoke: exit %d: %s%s", code, out, errs)
	}
	select {
	case code := <-agent.done:
		agent.done <- code
		errs := agent.err.String()
		if code != 1 || !strings.Contains(errs, "cardshare: error: relay: host refused this guest's key") ||
			!strings.Contains(errs, "cardshare: hint: the host no longer accepts this guest's key") {
			t.Errorf("revoked agent: exit %d:\n%s", code, errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("revoked agent still running after 10 s")
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("agent left its socket behind")
	}
	// The agent may see the host's refusal before the host has logged it;
	// stopping serve then would drop the log line.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(serve.err.String(), "refused connection") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if code := serve.stop(t); code != 0 {
		t.Errorf("serve: exit %d:\n%s", code, &serve.err)
	}
	for _, want := range []string{"guest paired", "guest attached", `reason="reader policy changed"`, "reason=revoked", "refused connection",
		`msg="pcsc call" guest=vm1`, "cmd=SCARD_TRANSMIT"} {
		if !strings.Contains(serve.err.String(), want) {
			t.Errorf("serve log lacks %q:\n%s", want, &serve.err)
		}
	}
	if log := serve.err.String(); strings.Contains(log, "Hello world") || strings.Contains(strings.ToLower(log), "48656c6c6f") {
		t.Errorf("card data in the audit log:\n%s", log)
	}
}

func mustHelloCLI(t *testing.T, socket string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := testenv.RunClient(t, testenv.BuildClient(t), socket, "hello")
		if err == nil && strings.Contains(out, "response: Hello world!") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hello world through %s: %q, %v", socket, out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The reverse direction through the CLI: the host pairs a guest with
// --dial, the guest joins with --listen, serve dials the agent, a real
// libpcsclite client gets its hello, and `cardshare status` shows the
// guest's counters.
func TestCLIRelayReverse(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	state := filepath.Join(t.TempDir(), "host")
	creds := filepath.Join(t.TempDir(), "guest", "credentials.json")
	sockDir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "g", "pcscd.comm")
	ctl := filepath.Join(sockDir, "ctl", "relay.sock")
	guestAddr := freePort(t)

	code, out, errs := cli(t, "", "relay", "pair", "--state-dir", state, "--dial", guestAddr, "vm2")
	if code != 0 || !strings.Contains(out, "--listen :") {
		t.Fatalf("pair: exit %d:\n%s%s", code, out, errs)
	}
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)
	if code, _, errs := cli(t, "", "relay", "pair", "--state-dir", state, "--dial", "10.0.0.5", "vm3"); code != 1 ||
		!strings.Contains(errs, "hint: give the guest's address") {
		t.Errorf("pair with a bad --dial: exit %d: %s", code, errs)
	}

	serve := runBackground(t, "relay", "serve", "--listen", "none", "--state-dir", state, "--pcscd-socket", p.Socket,
		"--control-socket", ctl)
	serve.waitOut(t, `relay: not listening`)

	code, out, errs = cli(t, "", "relay", "join", "--credentials", creds, "--token", token, "--listen", guestAddr)
	if code != 0 || !strings.Contains(out, "as vm2") {
		t.Fatalf("join: exit %d\n%s%s\nserve:\n%s", code, out, errs, &serve.err)
	}
	agent := runBackground(t, "relay", "agent", "--credentials", creds, "--socket", sock)
	agent.waitOut(t, `export PCSCLITE_CSOCK_NAME=(\S+)`)
	mustHelloCLI(t, sock)

	code, out, errs = cli(t, "", "status", "--control-socket", ctl)
	if code != 0 || !regexp.MustCompile(`(?m)^vm2\s+up\s+.*1 total.*`+regexp.QuoteMeta(guestAddr)).MatchString(out) {
		t.Errorf("status: exit %d:\n%s%s", code, out, errs)
	}
	code, out, _ = cli(t, "", "status", "--json", "--control-socket", ctl)
	if code != 0 || !strings.Contains(out, `"mode": "relay"`) || !strings.Contains(out, `"state": "up"`) {
		t.Errorf("status --json: exit %d:\n%s", code, out)
	}
	code, out, _ = cli(t, "", "relay", "list", "--state-dir", state)
	if code != 0 || !strings.Contains(out, "host dials "+guestAddr) {
		t.Errorf("list: exit %d:\n%s", code, out)
	}

	// The agent goes away: status says so, and the agent back on the
	// same address is dialed again.
	if code := agent.stop(t); code != 0 {
		t.Fatalf("agent: exit %d:\n%s", code, &agent.err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, out, _ := cli(t, "", "status", "--control-socket", ctl)
		if regexp.MustCompile(`(?m)^vm2\s+(backing-off|connecting)`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the agent stopped:\n%s", out)
		}
	}
	agent = runBackground(t, "relay", "agent", "--credentials", creds, "--socket", sock)
	agent.waitOut(t, `export PCSCLITE_CSOCK_NAME=(\S+)`)
	mustHelloCLI(t, sock)
}

// freePort returns a loopback address that nothing listened on a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
