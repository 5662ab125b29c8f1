package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// sshLogin runs a fresh ssh login of the guest user with no command, as an
// interactive `ssh GUEST` does, and returns what the script on its input
// prints.
func sshLogin(t *testing.T, s *testenv.SSHD, script string) string {
	t.Helper()
	cmd := exec.Command("ssh", "-F", s.ConfigFile, "-T", s.HostAlias)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh login: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestCLIGuestSetup(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	code, out, errs := cli(t, "", "guest", "setup", "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	for _, want := range []string{
		"guest: pointing the login user's programs at " + sock,
		"~/.profile:  created with the cardshare block",
		"note: ~/.config/environment.d/cardshare.conf skipped: the guest (Linux) does not run systemd",
		"guest: new logins see PCSCLITE_CSOCK_NAME",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if got := sshLogin(t, s, "echo \"v=$PCSCLITE_CSOCK_NAME\"\n"); got != "v="+sock {
		t.Errorf("a fresh ssh login sees %q", got)
	}

	code, out, _ = cli(t, "", "guest", "setup", "-F", s.ConfigFile, s.HostAlias)
	if code != 0 || !strings.Contains(out, "~/.profile:  already set up") || strings.Contains(out, "new logins") {
		t.Errorf("second setup: exit %d\n%s", code, out)
	}

	code, out, _ = cli(t, "", "guest", "setup", "--undo", "-F", s.ConfigFile, s.HostAlias)
	if code != 0 || !strings.Contains(out, "~/.profile:  deleted (cardshare had created it)") {
		t.Errorf("undo: exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(filepath.Join(s.Home, ".profile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".profile after undo: %v", err)
	}
}

// expose --setup-guest writes the profile once the forward is up.
func TestCLIExposeSetupGuest(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	code, out, errs := cli(t, "new logins see PCSCLITE_CSOCK_NAME", "expose", "--setup-guest", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	if !strings.Contains(out, "export PCSCLITE_CSOCK_NAME="+sock) || !strings.Contains(out, "~/.profile:  created with the cardshare block") {
		t.Errorf("stdout:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(s.Home, ".profile"))
	if err != nil || !strings.Contains(string(b), "PCSCLITE_CSOCK_NAME='"+sock+"'") {
		t.Errorf(".profile: %v\n%s", err, b)
	}
}

func TestCLIGuestEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	code, out, _ := cli(t, "", "guest", "env")
	if want := "export PCSCLITE_CSOCK_NAME=" + dir + "/cardshare/pcscd.comm\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = cli(t, "", "guest", "env", "--socket", "/srv/my socket")
	if want := "export PCSCLITE_CSOCK_NAME='/srv/my socket'\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestCLIResolve(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	code, out, errs := cli(t, "", "resolve", "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	for _, want := range []string{"from:         ssh_config: a Host or Match block in " + s.ConfigFile + " applies to guest",
		"connects to:  " + s.User + "@127.0.0.1 port ", "identities:   " + s.ClientKey, "known hosts:  " + s.KnownHosts + " (StrictHostKeyChecking yes)"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	// A Lima instance, found by its generated ssh.config.
	lima := t.TempDir()
	os.MkdirAll(filepath.Join(lima, "dev"), 0o755)
	os.WriteFile(filepath.Join(lima, "dev", "ssh.config"), []byte("Host lima-dev\n  Hostname 127.0.0.1\n  Port 60022\n  User alice\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"), 0o644)
	code, out, errs = cli(t, "", "resolve", "-F", s.ConfigFile, "--lima-home", lima, "dev")
	if code != 0 || !strings.Contains(out, "from:         lima: Lima instance dev") || !strings.Contains(out, "alice@127.0.0.1 port 60022") ||
		!strings.Contains(out, "none (UserKnownHostsFile /dev/null) (StrictHostKeyChecking no)") {
		t.Errorf("lima: exit %d\n%s%s", code, out, errs)
	}
}

// TestDefaultGuestSocket checks the Go mirror of the guests' default_dir
// (internal/guestsock.DefaultDirFunc) that `cardshare guest env` prints.
func TestDefaultGuestSocket(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("x", 95))
	os.Mkdir(long, 0o700)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_RUNTIME_DIR": dir, "HOME": "/nonexistent"}, dir + "/cardshare/pcscd.comm"},
		{map[string]string{"XDG_RUNTIME_DIR": "/nonexistent", "HOME": dir}, dir + "/.cardshare/pcscd.comm"},
		{map[string]string{"HOME": long}, "/tmp/cardshare-1000/pcscd.comm"},
		{map[string]string{}, "/tmp/cardshare-1000/pcscd.comm"},
	} {
		if got := unixsock.GuestSocketFor(env(tc.env), 1000); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.env, got, tc.want)
		}
	}
}
