package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
)

// background runs cardshare in-process until the test ends or stop is
// called, and returns its output so far on demand.
type background struct {
	out, err syncBuffer
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

	serve := runBackground(t, "relay", "serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--pcscd-socket", p.Socket)
	addr := serve.waitOut(t, `relay: listening on (\S+)`)

	code, out, errs := cli(t, "", "relay", "pair", "--state-dir", state, "vm1")
	if code != 0 {
		t.Fatalf("pair: exit %d: %s", code, errs)
	}
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)

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
	if code := serve.stop(t); code != 0 {
		t.Errorf("serve: exit %d:\n%s", code, &serve.err)
	}
	for _, want := range []string{"guest paired", "guest attached", "reason=revoked", "refused connection"} {
		if !strings.Contains(serve.err.String(), want) {
			t.Errorf("serve log lacks %q:\n%s", want, &serve.err)
		}
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
