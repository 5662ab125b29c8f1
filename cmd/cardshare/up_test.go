package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/testenv"
)

// upProcess is `cardshare up` running as a child process (the test binary,
// through testscript's command table), so that it gets real signals.
type upProcess struct {
	cmd    *exec.Cmd
	stdout logtest.Buffer
	stderr logtest.Buffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // its exit, once done
}

func startUp(t *testing.T, args ...string) *upProcess {
	t.Helper()
	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatalf("cardshare command of TestMain: %v", err)
	}
	u := &upProcess{done: make(chan struct{})}
	u.cmd = exec.Command(bin, append([]string{"up"}, args...)...)
	u.cmd.Stdout, u.cmd.Stderr = &u.stdout, &u.stderr
	u.cmd.WaitDelay = 5 * time.Second
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { u.err = u.cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		select {
		case <-u.done:
		default:
			u.cmd.Process.Kill()
			<-u.done
		}
		if t.Failed() {
			t.Logf("cardshare up stdout:\n%s\nstderr:\n%s", &u.stdout, &u.stderr)
		}
	})
	return u
}

func (u *upProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := u.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// statusDoc is the status document, with the lookups the tests need.
type statusDoc control.StatusV1

// statusJSON runs `cardshare status --json` in-process.
func statusJSON(t *testing.T, ctl string) (*statusDoc, error) {
	t.Helper()
	code, out, errs := cli(t, "", "status", "--json", "--control-socket", ctl)
	if code != 0 {
		return nil, errors.New(strings.TrimSpace(errs))
	}
	var s statusDoc
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	return &s, nil
}

// waitStatus polls status --json until ok accepts it.
func waitStatus(t *testing.T, ctl, what string, ok func(*statusDoc) bool) *statusDoc {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last *statusDoc
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := statusJSON(t, ctl)
		if err == nil && ok(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("status never showed %s; last error %v, last status:\n%s", what, lastErr, b)
	return nil
}

func (s *statusDoc) guest(name string) *control.GuestStatus {
	for i := range s.Guests {
		if s.Guests[i].Name == name {
			return &s.Guests[i]
		}
	}
	return nil
}

func (s *statusDoc) names() []string {
	var n []string
	for _, g := range s.Guests {
		n = append(n, g.Name)
	}
	return n
}

func (s *statusDoc) allUp(names ...string) bool {
	if !slices.Equal(s.names(), names) {
		return false
	}
	for _, g := range s.Guests {
		if g.State != "up" {
			return false
		}
	}
	return true
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUpReload runs `cardshare up` with two guests against real sshd and
// pcscd, holds a client connection open through one guest, and reloads the
// file with SIGHUP: removing one guest and adding another, with an invalid
// file, and with a file whose guests do not resolve. The untouched guest
// must never restart and the held connection must survive every reload.
func TestUpReload(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	a := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "alpha"})
	b := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "beta"})
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var sshConfig []byte
	for _, s := range []*testenv.SSHD{a, b} {
		c, err := os.ReadFile(s.ConfigFile)
		if err != nil {
			t.Fatal(err)
		}
		sshConfig = append(sshConfig, c...)
	}
	writeFile(t, filepath.Join(dir, "ssh_config"), string(sshConfig))
	cfg := filepath.Join(dir, "config.yaml")
	ctl := filepath.Join(dir, "run", "control.sock")
	host := fmt.Sprintf("host:\n  pcscd_socket: %s\n  ssh_config: %s\n", p.Socket, filepath.Join(dir, "ssh_config"))
	writeFile(t, cfg, host+`guests:
  - destination: alpha
  - destination: beta
`)

	up := startUp(t, "--config", cfg, "--control-socket", ctl)
	s := waitStatus(t, ctl, "alpha and beta up", func(s *statusDoc) bool { return s.allUp("alpha", "beta") })
	alpha := *s.guest("alpha")
	betaSock := s.guest("beta").Socket
	if want := filepath.Join(a.Home, ".cardshare", "pcscd.comm"); alpha.Socket != want {
		t.Errorf("alpha socket %s, want %s", alpha.Socket, want)
	}
	if alpha.HostProtocol != "4.4" || alpha.GuestProtocol != "4.4" || alpha.User != a.User || alpha.Address != a.Addr {
		t.Errorf("alpha status %+v: want protocols 4.4/4.4, user %s at %s", alpha, a.User, a.Addr)
	}
	if s.Version != 1 || s.PID != up.cmd.Process.Pid || s.Host.PCSCDSocket != p.Socket || s.Host.Backend != "socket" || s.ReloadError != "" {
		t.Errorf("status header %+v", s)
	}
	checkMode(t, ctl, 0o600)
	checkMode(t, filepath.Dir(ctl), 0o700|fs.ModeDir)
	for _, want := range []string{"export PCSCLITE_CSOCK_NAME=" + alpha.Socket, "export PCSCLITE_CSOCK_NAME=" + betaSock} {
		if !strings.Contains(up.stdout.String(), want) {
			t.Errorf("stdout lacks %q", want)
		}
	}

	// A guest program waits for a card through alpha, on one connection
	// that has to outlive the reloads.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waiter := testenv.ClientCommand(ctx, testenv.BuildClient(t), alpha.Socket, "wait", "100")
	out, err := waiter.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var waitErr logtest.Buffer
	waiter.Stderr = &waitErr
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "waiting: EMPTY") {
		t.Fatalf("client: %q, stderr %s", lines.Text(), &waitErr)
	}
	s = waitStatus(t, ctl, "alpha's connection open", func(s *statusDoc) bool { return s.guest("alpha").OpenConnections >= 1 })
	open := s.guest("alpha").OpenConnections

	// Reload: beta goes, gamma comes (beta's sshd, its own socket path).
	gammaSock := filepath.Join(b.Home, "gamma", "pcscd.comm")
	writeFile(t, cfg, host+`guests:
  - destination: alpha
  - name: gamma
    destination: beta
    socket: `+gammaSock+`
    setup_guest: true
`)
	up.signal(t, syscall.SIGHUP)
	s = waitStatus(t, ctl, "alpha and gamma up", func(s *statusDoc) bool { return s.allUp("alpha", "gamma") })
	checkUntouched(t, alpha, s.guest("alpha"), open)
	if g := s.guest("gamma"); g.Socket != gammaSock {
		t.Errorf("gamma socket %s, want %s", g.Socket, gammaSock)
	}
	if _, err := os.Lstat(betaSock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("beta's socket %s after beta was removed: %v, want it gone", betaSock, err)
	}
	if s.ReloadError != "" {
		t.Errorf("reload_error %q after a good reload", s.ReloadError)
	}
	// setup_guest: gamma's login shells find the socket (the test guest
	// has no systemd, so the shell profile is what setup writes).
	profile := filepath.Join(b.Home, ".profile")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(profile); err == nil && strings.Contains(string(b), "PCSCLITE_CSOCK_NAME") && strings.Contains(string(b), gammaSock) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup_guest: %s does not point at %s", profile, gammaSock)
		}
	}

	// Reload with a broken file: refused, nothing changes.
	writeFile(t, cfg, host+"  keepalife: 5s\nguests:\n  - destination: alpha\n")
	up.signal(t, syscall.SIGHUP)
	s = waitStatus(t, ctl, "the reload refused", func(s *statusDoc) bool { return s.ReloadError != "" })
	if want := cfg + `:4: unknown key "keepalife" in host`; !strings.Contains(s.ReloadError, want) {
		t.Errorf("reload_error %q lacks %q", s.ReloadError, want)
	}
	if !s.allUp("alpha", "gamma") {
		t.Errorf("guests after a refused reload: %+v", s.Guests)
	}
	checkUntouched(t, alpha, s.guest("alpha"), open)
	// The status can change before the log line has come through the
	// process's stderr pipe: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log := up.stderr.String()
		if strings.Contains(log, "config reload refused") && strings.Contains(log, `hint="did you mean \"keepalive\"?"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("log lacks the refused reload with its hint:\n%s", log)
			break
		}
	}

	// Reload with a file that parses but whose ssh_config is gone: no guest
	// resolves, and every running forward is kept.
	writeFile(t, cfg, fmt.Sprintf("host:\n  pcscd_socket: %s\n  ssh_config: %s\nguests:\n  - destination: alpha\n", p.Socket, filepath.Join(dir, "gone")))
	up.signal(t, syscall.SIGHUP)
	s = waitStatus(t, ctl, "the reload kept alpha", func(s *statusDoc) bool { return strings.Contains(s.ReloadError, "running forward kept") })
	if !s.allUp("alpha") {
		t.Errorf("guests after a reload that resolves nothing: %+v", s.Guests)
	}
	checkUntouched(t, alpha, s.guest("alpha"), open)

	// The connection held since before the reloads still relays: pcscd's
	// card event reaches the waiting client.
	p.InsertCard(t)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "changed: ") || !strings.Contains(lines.Text(), "PRESENT") {
		t.Errorf("client after the reloads: %q, stderr %s", lines.Text(), &waitErr)
	}
	if err := waiter.Wait(); err != nil {
		t.Errorf("client: %v: %s", err, &waitErr)
	}

	up.signal(t, syscall.SIGTERM)
	select {
	case <-up.done:
		if up.err != nil {
			t.Errorf("cardshare up after SIGTERM: %v", up.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cardshare up did not stop within 30 s of SIGTERM")
	}
	for _, p := range []string{ctl, alpha.Socket} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after stop: %v, want it removed", p, err)
		}
	}
}

// checkUntouched asserts that a guest's forward did not restart: same
// state start, and its open connections are still there.
func checkUntouched(t *testing.T, before control.GuestStatus, now *control.GuestStatus, open int64) {
	t.Helper()
	if now == nil {
		t.Fatalf("guest %s is gone", before.Name)
	}
	if !now.Since.Equal(before.Since) || now.State != "up" {
		t.Errorf("guest %s: state %s since %v, want up since %v: its forward restarted", before.Name, now.State, now.Since, before.Since)
	}
	if now.OpenConnections != open {
		t.Errorf("guest %s: %d open connections, want the %d held open", before.Name, now.OpenConnections, open)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() &^ fs.ModeSocket; got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

// Off a terminal, only the export line is printed (logs carry the rest);
// on one, every state change gets a line.
func TestProgress(t *testing.T) {
	events := []forward.Event{
		{Guest: "vm", State: forward.StateConnecting},
		{Guest: "vm", State: forward.StateUp, Socket: "/run/user/1000/cardshare/pcscd.comm"},
		{Guest: "vm", State: forward.StateBackoff, Err: errors.New("guest connection lost: EOF"), Retry: time.Now().Add(5 * time.Second)},
		{Guest: "vm", State: forward.StateConnecting},
		{Guest: "vm", State: forward.StateUp, Socket: "/run/user/1000/cardshare/pcscd.comm"},
		{Guest: "vm", State: forward.StateStopped},
	}
	export := "vm: host pcscd is at /run/user/1000/cardshare/pcscd.comm in the guest:\n    export PCSCLITE_CSOCK_NAME=/run/user/1000/cardshare/pcscd.comm\n"
	for _, chatty := range []bool{false, true} {
		var b strings.Builder
		p := &progress{w: &b, chatty: chatty, sockets: map[string]string{}}
		for _, e := range events {
			p.event(e, "dev@127.0.0.1:2222")
		}
		p.note("reloaded %s", "x.yaml")
		want := export
		if chatty {
			want = "vm: connecting to dev@127.0.0.1:2222\n" + export +
				"vm: guest connection lost: EOF; retrying in 5s\n" +
				"vm: connecting to dev@127.0.0.1:2222\nvm: up again\nvm: stopped\nreloaded x.yaml\n"
		}
		if b.String() != want {
			t.Errorf("chatty %v:\n%s\nwant:\n%s", chatty, b.String(), want)
		}
	}
}
