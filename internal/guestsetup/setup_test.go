//go:build unix

package guestsetup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

func TestProfileBlockRoundTrip(t *testing.T) {
	const sock = "/run/user/1000/cardshare/pcscd.comm"
	for _, tc := range []struct {
		name    string
		content string
		existed bool
	}{
		{"missing file", "", false},
		{"empty file", "", true},
		{"no trailing newline", "export EDITOR=vi", true},
		{"usual", "# ~/.profile\nPATH=$HOME/bin:$PATH\n", true},
		{"CRLF", "PATH=x\r\n", true},
		{"quotes", "echo 'it''s'\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := withBlock([]byte(tc.content), tc.existed, sock)
			if err != nil || !changed {
				t.Fatalf("withBlock: changed %v, err %v", changed, err)
			}
			if !strings.HasPrefix(string(out), tc.content) {
				t.Errorf("the original bytes are not kept in front:\n%q", out)
			}
			if !strings.Contains(string(out), "PCSCLITE_CSOCK_NAME='"+sock+"'\nexport PCSCLITE_CSOCK_NAME\n") {
				t.Errorf("no export in\n%s", out)
			}
			again, changed, err := withBlock(out, true, sock)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second withBlock changed the file: %v %v\n%q", changed, err, again)
			}
			moved, changed, _ := withBlock(out, true, "/home/u/.cardshare/pcscd.comm")
			if !changed || strings.Contains(string(moved), sock) || strings.Count(string(moved), blockBegin) != 1 {
				t.Errorf("new socket path not replaced in place:\n%s", moved)
			}
			for _, f := range [][]byte{out, moved} {
				back, found, del, err := withoutBlock(f)
				if err != nil || !found {
					t.Fatalf("withoutBlock: found %v err %v", found, err)
				}
				if string(back) != tc.content {
					t.Errorf("undo gave %q, want %q", back, tc.content)
				}
				if del != !tc.existed {
					t.Errorf("delete = %v, want %v", del, !tc.existed)
				}
			}
		})
	}
}

func TestProfileBlockKeepsUserEdits(t *testing.T) {
	out, _, _ := withBlock([]byte("a\n"), true, "/s")
	out = append(out, "b\n"...) // the user adds a line after the block
	back, found, _, err := withoutBlock(out)
	if err != nil || !found || string(back) != "a\nb\n" {
		t.Errorf("got %q, %v, %v", back, found, err)
	}
	// A file that consisted of the block only, but was not created by
	// setup, stays (empty).
	out, _, _ = withBlock(nil, true, "/s")
	if _, _, del, _ := withoutBlock(out); del {
		t.Error("an existing empty file would be deleted")
	}
}

func TestProfileBlockBroken(t *testing.T) {
	for _, c := range []string{
		blockBegin + "\nexport X=1\n",
		blockEnd + "\n" + blockBegin + "\n",
		blockBegin + "\n" + blockBegin + "\n" + blockEnd + "\n",
	} {
		if _, _, err := withBlock([]byte(c), true, "/s"); err == nil {
			t.Errorf("withBlock(%q): no error", c)
		}
		if _, _, _, err := withoutBlock([]byte(c)); err == nil {
			t.Errorf("withoutBlock(%q): no error", c)
		}
	}
}

// Undo restores a file's exact bytes, whatever they were.
func FuzzProfileBlock(f *testing.F) {
	f.Add([]byte("PATH=x\n"), true)
	f.Add([]byte("no newline"), true)
	f.Add([]byte(""), false)
	f.Add([]byte("\n\n"), true)
	f.Fuzz(func(t *testing.T, content []byte, existed bool) {
		if bytes.Contains(content, []byte("cardshare")) {
			return
		}
		if !existed {
			content = nil
		}
		out, _, err := withBlock(content, existed, "/tmp/cardshare-1/pcscd.comm")
		if err != nil {
			t.Fatal(err)
		}
		back, found, del, err := withoutBlock(out)
		if err != nil || !found {
			t.Fatalf("found %v, err %v", found, err)
		}
		if !bytes.Equal(back, content) || del == existed {
			t.Fatalf("undo of %q gave %q (delete %v)", content, back, del)
		}
	})
}

func TestParseSurvey(t *testing.T) {
	out := "home=/home/u\nos=Linux\nsystemd=1\nshell=/bin/bash\nhomewritable=1\nsocket=/run/user/1000/cardshare/pcscd.comm\n" +
		"dir=1 .config\nfile=1 8 .profile\nPATH=x\nY\nfile=0 0 .bash_profile\n\nodd=not a regular file .zprofile\n" +
		"sudo=refused\nsudoerr=sudo: a password is required\nunit=pcscd.socket enabled active\nlink=/x\n"
	s, err := parseSurvey([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if s.home != "/home/u" || !s.systemd || s.shell != "/bin/bash" || !s.dirs[".config"] {
		t.Errorf("survey %+v", s)
	}
	if f := s.files[".profile"]; string(f.content) != "PATH=x\nY" || !f.writable {
		t.Errorf(".profile = %+v", f)
	}
	if f, ok := s.files[".bash_profile"]; !ok || len(f.content) != 0 || f.writable {
		t.Errorf(".bash_profile = %+v", f)
	}
	if s.sudo != "refused" || s.sudoErr != "sudo: a password is required" || s.units["pcscd.socket"] != (unitState{"enabled", "active"}) || s.link != "/x" {
		t.Errorf("system survey %+v", s)
	}
	if _, err := parseSurvey([]byte("home=/h\nfile=1 100 .profile\nshort\n")); !errors.Is(err, ErrSetup) {
		t.Errorf("truncated file: %v", err)
	}
	if _, err := parseSurvey([]byte("error=the login user has no home directory\n")); !errors.Is(err, ErrSetup) {
		t.Errorf("error line: %v", err)
	}
}

// The tmpfiles.d file is what systemd-tmpfiles itself understands.
func TestTmpfilesContentWithSystemdTmpfiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for systemd-tmpfiles --root")
	}
	bin, err := exec.LookPath("systemd-tmpfiles")
	if err != nil {
		t.Skip("no systemd-tmpfiles")
	}
	root := t.TempDir()
	conf := filepath.Join(root, "cardshare.conf")
	before := map[string]unitState{"pcscd.socket": {"enabled", "active"}}
	content := tmpfilesContent("/run/user/1000/cardshare/pcscd.comm", before, "/run/pcscd/pcscd.comm")
	if err := os.WriteFile(conf, content, 0o644); err != nil {
		t.Fatal(err)
	}
	// A stale pcscd socket file is replaced by the link (L+).
	os.MkdirAll(filepath.Join(root, "run", "pcscd"), 0o755)
	os.WriteFile(filepath.Join(root, "run", "pcscd", "pcscd.comm"), nil, 0o600)
	if out, err := exec.Command(bin, "--root="+root, "--create", conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	got, err := os.Readlink(filepath.Join(root, "run", "pcscd", "pcscd.comm"))
	if err != nil || got != "/run/user/1000/cardshare/pcscd.comm" {
		t.Errorf("link = %q, %v", got, err)
	}
	if b := parseBefore(content); b["pcscd.socket"] != before["pcscd.socket"] || b["pcscd.service"] != (unitState{"none", "unknown"}) {
		t.Errorf("before = %v", b)
	}
	if tg := tmpfilesTarget(content, "/run/pcscd/pcscd.comm"); tg != "/run/user/1000/cardshare/pcscd.comm" {
		t.Errorf("target %q", tg)
	}
}

func TestExportLine(t *testing.T) {
	if got := ExportLine("/a b"); got != "export PCSCLITE_CSOCK_NAME='/a b'" {
		t.Errorf("ExportLine = %s", got)
	}
	if got := ExportLine("/run/user/1000/cardshare/pcscd.comm"); got != "export PCSCLITE_CSOCK_NAME=/run/user/1000/cardshare/pcscd.comm" {
		t.Errorf("ExportLine = %s", got)
	}
}

// harnessClient connects to the test sshd as its guest user.
func harnessClient(t *testing.T, s *testenv.SSHD) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshdial.Dial(ctx, tg, sshdial.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func setup(t *testing.T, c *ssh.Client, opts Options) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Setup(ctx, c, opts)
	if err != nil {
		t.Fatalf("Setup(%+v): %v", opts, err)
	}
	return res
}

// writeAsGuest writes a file in the guest user's home, owned by the user.
func writeAsGuest(t *testing.T, s *testenv.SSHD, name, content string) {
	t.Helper()
	p := filepath.Join(s.Home, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, s.UID, s.GID)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loginShellSees runs a fresh ssh login of the guest user with no command,
// as `ssh GUEST` does, feeding it a script: sshd starts the login shell as a
// login shell, which reads the profile.
func loginShellSees(t *testing.T, s *testenv.SSHD) string {
	t.Helper()
	cmd := exec.Command("ssh", "-F", s.ConfigFile, "-T", s.HostAlias)
	cmd.Stdin = strings.NewReader("echo \"v=$PCSCLITE_CSOCK_NAME\"\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh login: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestSetupGuestProfile(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	// The user's own files: a .profile without a final newline and a
	// .bash_profile, which bash reads instead of .profile.
	const profile = "# my profile\nexport EDITOR=vi"
	const bashProfile = "PATH=$HOME/bin:$PATH\n"
	writeAsGuest(t, s, ".profile", profile)
	writeAsGuest(t, s, ".bash_profile", bashProfile)
	os.Chmod(filepath.Join(s.Home, ".profile"), 0o640)
	c := harnessClient(t, s)
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")

	res := setup(t, c, Options{})
	if res.Socket != sock || res.OS != "Linux" || res.Systemd || res.Shell != "/bin/sh" {
		t.Errorf("result %+v", res)
	}
	want := map[string]string{"~/.profile": "added the cardshare block", "~/.bash_profile": "added the cardshare block"}
	if len(res.Changes) != 2 {
		t.Errorf("changes %+v, want %v", res.Changes, want)
	}
	for _, ch := range res.Changes {
		if want[ch.Path] != ch.Action || !ch.Changed {
			t.Errorf("change %+v, want %q", ch, want[ch.Path])
		}
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "does not run systemd") {
		t.Errorf("notes %q, want one about environment.d", res.Notes)
	}
	got := readFile(t, filepath.Join(s.Home, ".profile"))
	if !strings.HasPrefix(got, profile+"\n"+blockBegin+"\n") || !strings.Contains(got, "PCSCLITE_CSOCK_NAME='"+sock+"'") {
		t.Errorf(".profile:\n%s", got)
	}
	if fi, _ := os.Stat(filepath.Join(s.Home, ".profile")); fi.Mode().Perm() != 0o640 {
		t.Errorf(".profile mode %v, want 0640 kept", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(s.Home, ".config")); err == nil {
		t.Error("~/.config created on a guest without systemd")
	}

	// What sees the variable: login shells of sh and bash, and a fresh
	// ssh login; not `ssh GUEST CMD`, whose shell is not a login shell.
	for cmd, wantVal := range map[string]string{
		`sh -l -c 'echo "v=$PCSCLITE_CSOCK_NAME"'`:   "v=" + sock,
		`bash -l -c 'echo "v=$PCSCLITE_CSOCK_NAME"'`: "v=" + sock,
		`echo "v=$PCSCLITE_CSOCK_NAME"`:              "v=",
	} {
		if got := strings.TrimSpace(s.SSH(t, cmd)); got != wantVal {
			t.Errorf("ssh guest %s: %q, want %q", cmd, got, wantVal)
		}
	}
	if got := loginShellSees(t, s); got != "v="+sock {
		t.Errorf("ssh login shell: %q", got)
	}

	// Idempotent.
	before := readFile(t, filepath.Join(s.Home, ".profile"))
	res = setup(t, c, Options{})
	if res.Changed() {
		t.Errorf("second setup changed %+v", res.Changes)
	}
	if readFile(t, filepath.Join(s.Home, ".profile")) != before {
		t.Error("second setup rewrote .profile")
	}

	// Another socket path replaces the block in place.
	other := "/tmp/cardshare-" + s.User + "/pcscd.comm"
	res = setup(t, c, Options{Socket: other})
	if !res.Changed() || res.Changes[0].Action != "updated the cardshare block" {
		t.Errorf("changes %+v", res.Changes)
	}
	if got := readFile(t, filepath.Join(s.Home, ".profile")); strings.Count(got, blockBegin) != 1 || !strings.Contains(got, other) {
		t.Errorf(".profile after the path changed:\n%s", got)
	}

	// Undo restores the exact bytes and mode.
	res = setup(t, c, Options{Undo: true})
	if len(res.Changes) != 2 || !res.Changed() {
		t.Errorf("undo changes %+v", res.Changes)
	}
	if got := readFile(t, filepath.Join(s.Home, ".profile")); got != profile {
		t.Errorf(".profile after undo %q, want %q", got, profile)
	}
	if got := readFile(t, filepath.Join(s.Home, ".bash_profile")); got != bashProfile {
		t.Errorf(".bash_profile after undo %q", got)
	}
	if fi, _ := os.Stat(filepath.Join(s.Home, ".profile")); fi.Mode().Perm() != 0o640 {
		t.Errorf(".profile mode %v after undo", fi.Mode())
	}
	res = setup(t, c, Options{Undo: true})
	if res.Changed() || len(res.Changes) != 1 || res.Changes[0].Action != actionNothing {
		t.Errorf("second undo %+v", res.Changes)
	}
}

// On a fresh account setup creates .profile, and undo deletes it again.
func TestSetupGuestCreatesAndDeletesProfile(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	res := setup(t, c, Options{})
	if len(res.Changes) != 1 || res.Changes[0].Action != "created with the cardshare block" {
		t.Errorf("changes %+v", res.Changes)
	}
	fi, err := os.Stat(filepath.Join(s.Home, ".profile"))
	if err != nil || fi.Mode().Perm() != 0o644 || int(fi.Sys().(*syscall.Stat_t).Uid) != s.UID {
		t.Fatalf(".profile %v, %v", fi, err)
	}
	setup(t, c, Options{Undo: true})
	if _, err := os.Lstat(filepath.Join(s.Home, ".profile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".profile after undo: %v, want it deleted", err)
	}
}

// A guest with systemd also gets environment.d, which systemd's own
// generator reads.
func TestSetupGuestEnvironmentD(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sys := defaultSystemEnv
	sys.sdRoot = s.Dir // any existing directory: "systemd runs"
	c := harnessClient(t, s)
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	res := setup(t, c, Options{sys: &sys})
	if !res.Systemd || len(res.Notes) != 0 || len(res.Changes) != 2 || res.Changes[1].Path != "~/"+fileEnvD {
		t.Fatalf("result %+v", res)
	}
	conf := filepath.Join(s.Home, fileEnvD)
	got := readFile(t, conf)
	if !strings.HasSuffix(got, "\nPCSCLITE_CSOCK_NAME="+sock+"\n") {
		t.Errorf("environment.d file:\n%s", got)
	}
	gen := "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator"
	if _, err := os.Stat(gen); err == nil {
		out := s.Run(t, gen)
		if !strings.Contains(out, "PCSCLITE_CSOCK_NAME="+sock+"\n") {
			t.Errorf("systemd's environment.d generator printed:\n%s", out)
		}
	}
	if res := setup(t, c, Options{sys: &sys}); res.Changed() {
		t.Errorf("second setup changed %+v", res.Changes)
	}
	setup(t, c, Options{Undo: true, sys: &sys})
	if _, err := os.Lstat(filepath.Join(s.Home, ".config")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("~/.config after undo: %v, want the directories setup made removed", err)
	}
}

// Nothing changes when one of the files cannot be written.
func TestSetupGuestNothingHalfDone(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	writeAsGuest(t, s, ".bash_profile", "x\n")
	p := filepath.Join(s.Home, ".bash_profile")
	os.Chown(p, 0, 0) // root's, read-only for the user
	c := harnessClient(t, s)
	_, err := Setup(context.Background(), c, Options{})
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), ".bash_profile") {
		t.Fatalf("err = %v, want ErrSetup naming .bash_profile", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Home, ".profile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".profile was written although setup failed: %v", err)
	}
}

// The default path setup writes is the one expose listens on.
func TestSetupGuestSocketMatchesPrepare(t *testing.T) {
	t.Parallel()
	xdg, err := os.MkdirTemp("", "xdg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(xdg) })
	plain := testenv.StartSSHD(t, testenv.SSHDOptions{})
	withXDG := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"SetEnv XDG_RUNTIME_DIR=" + xdg}})
	os.Chown(xdg, withXDG.UID, withXDG.GID)
	os.Chmod(xdg, 0o700)
	for _, s := range []*testenv.SSHD{plain, withXDG} {
		c := harnessClient(t, s)
		sv, err := runSurvey(context.Background(), c, "", false, defaultSystemEnv)
		if err != nil {
			t.Fatal(err)
		}
		info, err := guestsock.Prepare(context.Background(), c, "")
		if err != nil {
			t.Fatal(err)
		}
		if sv.socket != info.Socket {
			t.Errorf("setup points at %s, expose listens on %s", sv.socket, info.Socket)
		}
	}
}

// fakeSystem installs fake sudo, systemctl and systemd-tmpfiles that act on
// files in a directory of the guest user, and returns the system paths for
// Options and the directory.
func fakeSystem(t *testing.T, s *testenv.SSHD, socketEnabled, socketActive string) (*systemEnv, string) {
	t.Helper()
	state := filepath.Join(s.Dir, "fakesys")
	bin := filepath.Join(s.Dir, "fakebin")
	for _, d := range []string{state, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(state, s.UID, s.GID)
	scripts := map[string]string{
		"sudo": `[ "$1" = -n ] || exit 1; shift; echo "sudo $*" >> ` + state + `/log; exec "$@"`,
		"systemctl": `d=` + state + `; echo "systemctl $*" >> $d/log; c=$1; shift
case $c in
is-enabled) cat $d/$1.enabled 2>/dev/null || exit 1 ;;
is-active) cat $d/$1.active 2>/dev/null || echo inactive ;;
stop) for u; do echo inactive > $d/$u.active; done ;;
start) for u; do echo active > $d/$u.active; done ;;
mask) for u; do cp $d/$u.enabled $d/$u.premask 2>/dev/null; echo masked > $d/$u.enabled; done ;;
unmask) for u; do if [ -f $d/$u.premask ]; then mv $d/$u.premask $d/$u.enabled; else rm -f $d/$u.enabled; fi; done ;;
esac`,
		"tmpfiles": `echo "tmpfiles $*" >> ` + state + `/log; awk '$1 == "L+" { print $2, $7 }' "$2" | while read l t; do ln -sf "$t" "$l"; done`,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unit := func(name, enabled, active string) {
		if enabled != "" {
			writeAsGuestAbs(t, s, filepath.Join(state, name+".enabled"), enabled+"\n")
		}
		writeAsGuestAbs(t, s, filepath.Join(state, name+".active"), active+"\n")
	}
	unit("pcscd.socket", socketEnabled, socketActive)
	unit("pcscd.service", "indirect", "inactive")
	return &systemEnv{
		sdRoot:    s.Dir,
		tmpConf:   filepath.Join(state, "tmpfiles.d", "cardshare.conf"),
		link:      filepath.Join(state, "pcscd.comm"),
		sudo:      filepath.Join(bin, "sudo"),
		systemctl: filepath.Join(bin, "systemctl"),
		tmpfiles:  filepath.Join(bin, "tmpfiles"),
	}, state
}

func writeAsGuestAbs(t *testing.T, s *testenv.SSHD, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, s.UID, s.GID)
}

func TestSetupGuestSystem(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sys, state := fakeSystem(t, s, "enabled", "active")
	c := harnessClient(t, s)
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	log := func() string {
		b, _ := os.ReadFile(filepath.Join(state, "log"))
		os.Remove(filepath.Join(state, "log"))
		return string(b)
	}
	unitFile := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(state, name))
		return strings.TrimSpace(string(b))
	}

	res := setup(t, c, Options{System: true, sys: sys})
	if !res.Changed() || len(res.Changes) != 5 {
		t.Errorf("changes %+v", res.Changes)
	}
	l := log()
	for _, want := range []string{"sudo " + sys.systemctl + " stop pcscd.socket pcscd.service",
		"sudo " + sys.systemctl + " mask pcscd.socket pcscd.service", "tmpfiles --create " + sys.tmpConf} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	if got, err := os.Readlink(sys.link); err != nil || got != sock {
		t.Errorf("link %q, %v; want %s", got, err, sock)
	}
	conf := readFile(t, sys.tmpConf)
	if !strings.Contains(conf, markBefore+" pcscd.socket=enabled/active pcscd.service=indirect/inactive\n") ||
		!strings.Contains(conf, "L+ "+sys.link+" - - - - "+sock+"\n") {
		t.Errorf("tmpfiles.d file:\n%s", conf)
	}
	if unitFile("pcscd.socket.enabled") != "masked" || unitFile("pcscd.socket.active") != "inactive" {
		t.Error("pcscd.socket not stopped and masked")
	}

	// Idempotent: the second run finds everything in place and keeps the
	// state recorded before the first.
	res = setup(t, c, Options{System: true, sys: sys})
	if res.Changed() {
		t.Errorf("second setup changed %+v", res.Changes)
	}
	if l := log(); strings.Contains(l, "mask") || strings.Contains(l, "tmpfiles") {
		t.Errorf("second setup ran:\n%s", l)
	}
	if readFile(t, sys.tmpConf) != conf {
		t.Error("second setup rewrote the tmpfiles.d file")
	}

	// Undo: file and link gone, units unmasked, the socket started again
	// because it was active before.
	setup(t, c, Options{System: true, Undo: true, sys: sys})
	if _, err := os.Lstat(sys.tmpConf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tmpfiles.d file after undo: %v", err)
	}
	if _, err := os.Lstat(sys.link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link after undo: %v", err)
	}
	l = log()
	if !strings.Contains(l, "unmask pcscd.socket pcscd.service") || !strings.Contains(l, "start pcscd.socket\n") {
		t.Errorf("undo log:\n%s", l)
	}
	if unitFile("pcscd.socket.enabled") != "enabled" || unitFile("pcscd.socket.active") != "active" {
		t.Error("pcscd.socket not back to enabled and active")
	}
	if _, err := os.Lstat(filepath.Join(s.Home, ".profile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".profile that setup created, after undo: %v", err)
	}
}

// A unit the admin had masked stays masked after undo.
func TestSetupGuestSystemKeepsAdminMask(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sys, state := fakeSystem(t, s, "masked", "inactive")
	c := harnessClient(t, s)
	setup(t, c, Options{System: true, sys: sys})
	os.Remove(filepath.Join(state, "log"))
	setup(t, c, Options{System: true, Undo: true, sys: sys})
	b, _ := os.ReadFile(filepath.Join(state, "log"))
	if !strings.Contains(string(b), "unmask pcscd.service\n") || strings.Contains(string(b), "start") {
		t.Errorf("undo log:\n%s", b)
	}
}

// Without root, sudo must work without a password; otherwise nothing
// changes and the error says why.
func TestSetupGuestSystemNeedsSudo(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sys := defaultSystemEnv
	sys.sdRoot = s.Dir
	refuse := filepath.Join(s.Dir, "sudo-refuses")
	os.WriteFile(refuse, []byte("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"), 0o755)
	c := harnessClient(t, s)
	for _, tc := range []struct{ sudo, want string }{
		{refuse, "cannot run without a password (sudo: a password is required)"},
		{"/nonexistent/sudo", "sudo is not installed"},
		{"sudo", ""}, // the real one: not installed, or no sudoers entry for this user
	} {
		sys.sudo = tc.sudo
		_, err := Setup(context.Background(), c, Options{System: true, sys: &sys})
		if !errors.Is(err, ErrSudo) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("sudo %s: err = %v, want ErrSudo with %q", tc.sudo, err, tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(s.Home, ".profile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".profile written although --system failed: %v", err)
	}
}

// Without systemd the system part is skipped with a note, and the rest is
// done.
func TestSetupGuestSystemWithoutSystemd(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sys := defaultSystemEnv
	sys.sdRoot = "/nonexistent"
	c := harnessClient(t, s)
	res := setup(t, c, Options{System: true, sys: &sys})
	if len(res.Notes) != 2 || !strings.Contains(res.Notes[1], "--system skipped") {
		t.Errorf("notes %q", res.Notes)
	}
	if len(res.Changes) != 1 || res.Changes[0].Path != "~/.profile" {
		t.Errorf("changes %+v", res.Changes)
	}
}
