//go:build unix

package testenv

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/sshdial"
)

// dial connects to s like cardshare does: Resolve with s.ConfigFile, Dial.
func dial(t *testing.T, s *SSHD) *ssh.Client {
	t.Helper()
	ctx := context.Background()
	tgt, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshdial.Dial(ctx, tgt, sshdial.DialOptions{})
	if err != nil {
		t.Fatalf("%v\nsshd log:\n%s", err, s.Log())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// output runs command in a new session on c.
func output(c *ssh.Client, command string) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.Output(command)
	return strings.TrimSpace(string(out)), err
}

func mustOutput(t *testing.T, c *ssh.Client, command string) string {
	t.Helper()
	out, err := output(c, command)
	if err != nil {
		t.Fatalf("%q: %v", command, err)
	}
	return out
}

func TestSSHD(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	if !strings.HasPrefix(s.User, "csg") || len(s.User) != 9 || s.UID == 0 || s.PID == 0 {
		t.Errorf("SSHD = %+v", s)
	}
	c := dial(t, s)
	if got := mustOutput(t, c, "id -un; echo $HOME"); got != s.User+"\n"+s.Home {
		t.Errorf("id/HOME over sshdial.Dial = %q", got)
	}
	if got := strings.TrimSpace(s.Run(t, "id -u")); got != strconv.Itoa(s.UID) {
		t.Errorf("Run: id -u = %q, want %d", got, s.UID)
	}
	if got := strings.TrimSpace(s.SSH(t, "id -un")); got != s.User {
		t.Errorf("ssh -F ConfigFile: id -un = %q", got)
	}
}

// TestSSHDListenUnix forwards a socket into the user's home and connects to
// it from the guest side through sshd.
func TestSSHDListenUnix(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	c := dial(t, s)
	path := filepath.Join(s.Home, "pcscd.comm")
	ln, err := c.ListenUnix(path)
	if err != nil {
		t.Fatalf("ListenUnix: %v\nsshd log:\n%s", err, s.Log())
	}
	defer ln.Close()
	// OpenSSH creates it owned by the user with StreamLocalBindMask 0177.
	if got := strings.TrimSpace(s.Run(t, "stat -c %U:%a "+path)); got != s.User+":600" {
		t.Errorf("guest socket: %s", got)
	}
	accepted := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer conn.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
			accepted <- errors.New("bad request " + string(buf))
			return
		}
		_, err = conn.Write([]byte("pong"))
		accepted <- err
	}()
	// direct-streamlocal: sshd connects to path as the user, like a guest
	// program would, and that connection comes back through ln.
	conn, err := c.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("reply %q, %v", buf, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

func TestSSHDConfigOverride(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{Config: []string{
		"AllowStreamLocalForwarding no",
		"Match User nobody",
		"  AllowTcpForwarding no",
	}})
	c := dial(t, s)
	if ln, err := c.ListenUnix(filepath.Join(s.Home, "s")); err == nil {
		ln.Close()
		t.Fatal("ListenUnix allowed despite AllowStreamLocalForwarding no")
	}
	cfg, _ := os.ReadFile(s.ServerConfig)
	if !strings.HasPrefix(string(cfg), "AllowStreamLocalForwarding no\n") || !strings.HasSuffix(string(cfg), "Match User nobody\n  AllowTcpForwarding no\n") {
		t.Errorf("sshd_config:\n%s", cfg)
	}
}

func TestSSHDRestart(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	old := dial(t, s)
	pid, port := s.PID, s.Port
	s.Restart(t)
	if s.PID == pid || s.Port != port {
		t.Errorf("PID %d -> %d, port %d -> %d", pid, s.PID, port, s.Port)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("old listener %d still running", pid)
	}
	// Established sessions survive a restart, as with systemctl restart ssh.
	if got := mustOutput(t, old, "echo still"); got != "still" {
		t.Errorf("old connection: %q", got)
	}
	mustOutput(t, dial(t, s), "true")
	// ... and KillSessions still finds the old one, though it was reparented.
	if n := s.KillSessions(syscall.SIGKILL); n < 2 {
		t.Errorf("KillSessions signalled %d processes, want both connections", n)
	}
	waitClosed(t, old)
}

func waitClosed(t *testing.T, c *ssh.Client) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("client connection still open")
	}
}

func TestSSHDKill(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	c := dial(t, s)

	// A stopped session hangs without closing the connection.
	if n := s.KillSessions(syscall.SIGSTOP); n == 0 {
		t.Fatal("no session processes found")
	}
	res := make(chan error, 1)
	go func() { _, err := output(c, "true"); res <- err }()
	select {
	case err := <-res:
		t.Fatalf("session ran while sshd was stopped: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	s.KillSessions(syscall.SIGCONT)
	if err := <-res; err != nil {
		t.Fatal(err)
	}

	// Killing the listener refuses new connections but keeps sessions.
	s.Kill(syscall.SIGKILL)
	tgt, err := sshdial.Resolve(context.Background(), s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err = sshdial.Dial(context.Background(), tgt, sshdial.DialOptions{})
		if errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			break
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial after Kill: %v, want connection refused", err)
	}
	mustOutput(t, c, "true")

	// Killing the sessions drops the connection.
	if n := s.KillSessions(syscall.SIGKILL); n == 0 {
		t.Fatal("no session processes found")
	}
	waitClosed(t, c)
}

// TestSSHDHostKeyTypes checks sshdial.Dial against a real sshd with two
// host keys when known_hosts has only one of them.
func TestSSHDHostKeyTypes(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{HostKeyTypes: []string{"ed25519", "ecdsa"}})
	if len(s.HostKeys) != 2 || !strings.HasPrefix(s.HostKeys[1], "ecdsa-sha2-nistp256 ") {
		t.Fatalf("HostKeys = %q", s.HostKeys)
	}
	mustOutput(t, dial(t, s), "true")
	for _, k := range s.HostKeys {
		line := "[127.0.0.1]:" + strconv.Itoa(s.Port) + " " + k + "\n"
		if err := os.WriteFile(s.KnownHosts, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		c := dial(t, s)
		typ, _, _ := strings.Cut(k, " ")
		if got := c.Conn.(ssh.AlgorithmsConnMetadata).Algorithms().HostKey; got != typ {
			t.Errorf("known %s, negotiated %s", typ, got)
		}
	}
}

// TestSSHDTwoInstances runs two servers at once and checks that cleanup
// removes a user, its processes and its directory.
func TestSSHDTwoInstances(t *testing.T) {
	var first *SSHD
	t.Run("both", func(t *testing.T) {
		a := StartSSHD(t, SSHDOptions{})
		b := StartSSHD(t, SSHDOptions{HostAlias: "other"})
		if a.User == b.User || a.Port == b.Port || a.Dir == b.Dir {
			t.Fatalf("instances share user, port or dir: %+v %+v", a, b)
		}
		ca, cb := dial(t, a), dial(t, b)
		if mustOutput(t, ca, "id -un") != a.User || mustOutput(t, cb, "id -un") != b.User {
			t.Error("connected to the wrong instance")
		}
		s := strings.TrimSpace(a.Run(t, "sleep 60 >/dev/null 2>&1 & echo $!"))
		if s == "" {
			t.Fatal("no background process")
		}
		first = a
	})
	if first == nil {
		return
	}
	if _, err := user.Lookup(first.User); err == nil {
		t.Errorf("user %s still exists", first.User)
	}
	if _, err := os.Stat(first.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists", first.Dir)
	}
	if syscall.Kill(first.PID, 0) == nil {
		t.Errorf("sshd %d still running", first.PID)
	}
	if pids := pidsOfUID(first.UID); len(pids) > 0 {
		t.Errorf("processes of uid %d left: %v", first.UID, pids)
	}
	if _, err := net.DialTimeout("tcp", first.Addr, time.Second); err == nil {
		t.Errorf("%s still accepts connections", first.Addr)
	}
}
