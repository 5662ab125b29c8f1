//go:build linux

package winehost

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
)

// TestWineExpose runs the windows/amd64 `cardshare.exe expose --backend
// native` under Wine against the test sshd on loopback. Wine has no
// ssh.exe, so cardshare reads ssh_config itself: the -F file (a Windows
// path) names the host, port and user only, and the key and known_hosts
// come from %USERPROFILE%\.ssh, whose own config (which -F replaces) points
// at a dead port. The guest side is this machine's libpcsclite through the
// socket the sshd made: list, hello, a blocking wait that sees a card
// inserted, pcsc_scan. `cardshare.exe resolve` without -F shows that
// %USERPROFILE%\.ssh\config is read and the defaults are under
// %USERPROFILE%\.ssh.
func TestWineExpose(t *testing.T) {
	r := newRig(t)
	exe := r.build(t, "./cmd/cardshare", "cardshare.exe", false)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sshDir := r.freshProfileDir(t, ".ssh")
	r.freshProfileDir(t, "AppData/Local/cardshare")
	copyFile(t, s.ClientKey, filepath.Join(sshDir, "id_ed25519"))
	copyFile(t, s.KnownHosts, filepath.Join(sshDir, "known_hosts"))
	writeFile(t, filepath.Join(sshDir, "config"), "Host wineguest\n  HostName 127.0.0.1\n  Port 1\n")
	writeFile(t, filepath.Join(sshDir, "wine_config"), fmt.Sprintf(
		"# -F: only where the guest is; keys and known_hosts are the defaults\nHost wineguest\n  HostName 127.0.0.1\n  Port %d\n  User %s\n", s.Port, s.User))

	out, err := r.run(t, 2*time.Minute, exe, "resolve", "wineguest")
	for _, want := range []string{
		`from:         ssh_config: a Host or Match block in ssh_config applies to wineguest`,
		`connects to:  root@127.0.0.1 port 1`,
		`identities:   C:\users\root\.ssh\id_ed25519`,
		`known hosts:  C:\users\root\.ssh\known_hosts, C:\users\root\.ssh\known_hosts2`,
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("resolve wineguest: %v; no %q in:\n%s", err, want, out)
		}
	}
	t.Logf("cardshare.exe resolve wineguest (no -F) under Wine:\n%s", out)

	w := r.start(t, exe, "expose", "-v", "--backend", "native", "-F", `C:\users\root\.ssh\wine_config`, "wineguest")
	guest := w.waitFor(t, `export PCSCLITE_CSOCK_NAME=(\S+)`, 3*time.Minute)
	if !strings.HasPrefix(guest, s.Home) && !strings.HasPrefix(guest, "/run/user/") {
		t.Errorf("guest socket %s is not the login user's", guest)
	}
	checkGuest(t, r.pcscd, guest, w)
	noFailures(t, "expose", w)

	// `up` from its default config file (~/.config/cardshare/config.yaml
	// on every OS: %USERPROFILE%\.config\cardshare\config.yaml), beside
	// the expose, with backend auto (native on Windows): no control socket
	// either, said once.
	cfgDir := r.freshProfileDir(t, ".config/cardshare")
	upSock := filepath.Join(s.Home, "up.comm")
	writeFile(t, filepath.Join(cfgDir, "config.yaml"), fmt.Sprintf(
		"host:\n  ssh_config: 'C:\\users\\root\\.ssh\\wine_config'\nguests:\n  - destination: wineguest\n    socket: %s\n", upSock))
	up := r.start(t, exe, "up")
	if got := up.waitFor(t, `export PCSCLITE_CSOCK_NAME=(\S+)`, 3*time.Minute); got != upSock {
		t.Errorf("up exports %s, want %s", got, upSock)
	}
	out, err = testenv.RunClient(t, testenv.BuildClient(t), upSock, "hello")
	if err != nil || !strings.Contains(out, "response: Hello world!") {
		t.Fatalf("hello through up: %q, %v\nup:\n%s", out, err, up.output())
	}
	if n := strings.Count(up.output(), "no control socket"); n != 1 {
		t.Errorf("up said %d times that there is no control socket", n)
	}
	if !strings.Contains(up.output(), `backend=native source="native PC/SC (winscard.dll (Wine))"`) {
		t.Errorf("up's backend auto did not pick winscard.dll")
	}
	noFailures(t, "up", up)
}

// TestWineRelay runs the windows/amd64 `cardshare.exe relay serve
// --backend native` under Wine, pairs a guest with `cardshare.exe relay
// pair` (the state in %AppData%\cardshare\relay), and joins it from this
// machine's Linux `cardshare relay join` (the token on stdin) and `relay
// agent`; the guest's libpcsclite gets list, hello, a blocking wait and
// pcsc_scan through the agent's socket. Wine has no AF_UNIX: serve says
// once that status is unavailable and runs on, `relay pair` leaves the
// address for the user to fill in, and `cardshare.exe status` says why it
// cannot answer.
func TestWineRelay(t *testing.T) {
	r := newRig(t)
	exe := r.build(t, "./cmd/cardshare", "cardshare.exe", false)
	r.freshProfileDir(t, "AppData/Roaming/cardshare")
	r.freshProfileDir(t, "AppData/Local/cardshare")
	linux := filepath.Join(t.TempDir(), "cardshare")
	if out, err := exec.Command("go", "build", "-C", "../..", "-o", linux, "./cmd/cardshare").CombinedOutput(); err != nil {
		t.Fatalf("build cardshare: %v\n%s", err, out)
	}

	serve := r.start(t, exe, "relay", "serve", "--backend", "native", "--listen", "127.0.0.1:0")
	addr := serve.waitFor(t, `relay: listening on (\S+)`, 3*time.Minute)
	serve.waitFor(t, `no control socket`, 10*time.Second)

	out, err := r.run(t, 2*time.Minute, exe, "relay", "pair", "vm1")
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)
	if err != nil || token == "" || !strings.Contains(out, "cardshare relay join HOST:PORT") {
		t.Fatalf("relay pair: %v:\n%s", err, out)
	}

	home := t.TempDir()
	creds := filepath.Join(home, "credentials.json")
	join := exec.Command(linux, "relay", "join", "--credentials", creds, addr)
	join.Stdin = strings.NewReader(token)
	join.Env = append(os.Environ(), "HOME="+home)
	if out, err := join.CombinedOutput(); err != nil || !strings.Contains(string(out), "as vm1") {
		t.Fatalf("relay join: %v:\n%s\nserve:\n%s", err, out, serve.output())
	}

	sock := filepath.Join(guestDir(t), "g", "pcscd.comm")
	agent := exec.Command(linux, "relay", "agent", "--credentials", creds, "--socket", sock)
	agent.Env = join.Env
	agentOut := &wineProc{name: "relay agent", exited: make(chan struct{})}
	agent.Stdout, agent.Stderr = &agentOut.out, &agentOut.out
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		agentOut.err = agent.Wait()
		close(agentOut.exited)
	}()
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGINT)
		select {
		case <-agentOut.exited:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
			<-agentOut.exited
		}
	})
	if got := agentOut.waitFor(t, `export PCSCLITE_CSOCK_NAME=(\S+)`, 30*time.Second); got != sock {
		t.Errorf("agent exports %s, want %s", got, sock)
	}
	agentOut.waitFor(t, `msg="connected to host"`, 30*time.Second) // before that, "Service not available"
	checkGuest(t, r.pcscd, sock, serve)

	out, err = r.run(t, 2*time.Minute, exe, "status")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "cardshare: error: status is unavailable: this system has no Unix domain sockets") ||
		!strings.Contains(out, "cardshare: hint: ") || strings.Contains(out, "panic") {
		t.Errorf("cardshare.exe status: %v:\n%s", err, out)
	}
	t.Logf("cardshare.exe status under Wine:\n%s", out)
	if n := strings.Count(serve.output(), "no control socket"); n != 1 {
		t.Errorf("serve said %d times that there is no control socket:\n%s", n, serve.output())
	}
	noFailures(t, "relay serve", serve)
}

// noFailures checks that a cardshare under Wine logged no failed guest
// connection (a client's close is no failure) and did not panic, and
// shows its log.
func noFailures(t *testing.T, what string, w *wineProc) {
	t.Helper()
	out := w.output()
	for _, bad := range []string{"guest connection failed", "closing guest connection", "panic", "level=ERROR"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s under Wine logged %q", what, bad)
		}
	}
	t.Logf("cardshare.exe %s under Wine:\n%s", what, out)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
