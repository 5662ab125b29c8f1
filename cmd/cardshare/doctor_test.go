package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// doctorLines maps each check name to its status and message line.
func doctorLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if len(l) < 20 || l[0] == ' ' {
			continue
		}
		m[strings.TrimSpace(l[6:20])] = l
	}
	return m
}

func TestCLIDoctorAllPass(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	if code, _, errs := cli(t, "", "guest", "setup", "-F", s.ConfigFile, s.HostAlias); code != 0 {
		t.Fatalf("guest setup: %s", errs)
	}
	code, out, errs := cli(t, "", "doctor", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	lines := doctorLines(out)
	for name, want := range map[string]string{
		"backend":      "auto picks socket: the pcscd socket " + p.Socket + " answers",
		"host pcscd":   "protocol 4.4",
		"readers":      "2 readers: " + testenv.VPCDReader + " (card inserted); " + testenv.VPCDSecondReader,
		"polkit":       "",
		"ssh":          "logged in to guest as " + s.User,
		"forwarding":   "forwards Unix sockets",
		"guest socket": filepath.Join(s.Home, ".cardshare", "pcscd.comm") + " (private directory",
		"libpcsclite":  "guest pcsc-lite 1.9.9 (protocol 4.4) works with host pcscd protocol 4.4 (pcsc-lite 1.8.24–2.2.3): both speak protocol 4.4",
		"environment":  "~/.profile sets PCSCLITE_CSOCK_NAME",
	} {
		l, ok := lines[name]
		if !ok || (!strings.HasPrefix(l, "OK  ") && !strings.HasPrefix(l, "WARN")) || !strings.Contains(l, want) {
			t.Errorf("%s: line %q, want OK with %q", name, l, want)
		}
	}
	if strings.Contains(out, "FAIL") || errs != "" {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// Each failure is reported on its own line with a fix, later checks that
// do not depend on it still run, and the exit status is 1.
func TestCLIDoctorFailures(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	noForward := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	shared, err := os.MkdirTemp("", "csshared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o1777)
	noReaders := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V44}).Socket
	strict45 := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V45}, "Fake Reader 00 00").Socket

	tests := []struct {
		name  string
		args  []string
		fails map[string]string // check -> message part
		warns map[string]string
		skips []string
		fix   string
	}{
		{"pcscd missing", []string{"--pcscd-socket", "/nonexistent/pcscd.comm"},
			map[string]string{"backend": "auto: neither the pcscd socket (below) nor the native backend answers", "host pcscd": "nothing listens on /nonexistent/pcscd.comm"}, nil, []string{"readers"}, "systemctl enable --now pcscd.socket"},
		{"no readers", []string{"--pcscd-socket", noReaders},
			map[string]string{"readers": "pcscd lists no reader"}, nil, nil, "plug the reader in"},
		{"unknown host", []string{"--pcscd-socket", p.Socket, "-F", sshConfig(t, s, empty, s.ClientKey), "guest"},
			map[string]string{"ssh": "host key for [127.0.0.1]:"}, nil, []string{"forwarding", "guest socket", "libpcsclite", "environment"}, "(or `ssh -F "},
		{"forwarding refused", []string{"--pcscd-socket", p.Socket, "-F", noForward.ConfigFile, noForward.HostAlias},
			map[string]string{"forwarding": "guest sshd refused the socket forward"},
			map[string]string{"environment": "~/.profile does not set PCSCLITE_CSOCK_NAME"}, nil, "AllowStreamLocalForwarding yes"},
		{"shared socket directory", []string{"--pcscd-socket", p.Socket, "-F", s.ConfigFile, "--guest-socket", shared + "/pcscd.comm", s.HostAlias},
			map[string]string{"guest socket": "guest socket directory is writable by other users"},
			map[string]string{"environment": "does not set"}, nil, "read your PIN"},
		{"protocol mismatch", []string{"--pcscd-socket", strict45, "-F", s.ConfigFile, s.HostAlias},
			map[string]string{"libpcsclite": "cannot talk"},
			map[string]string{"environment": "does not set"}, nil, "upgrade the guest's libpcsclite to 2.4.1 or later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := cli(t, "", append([]string{"doctor"}, tt.args...)...)
			if code != 1 || !strings.Contains(errs, "cardshare: error: doctor: checks failed") {
				t.Errorf("exit %d, stderr %q", code, errs)
			}
			lines := doctorLines(out)
			for name, want := range tt.fails {
				if l := lines[name]; !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, want) {
					t.Errorf("%s: %q, want FAIL with %q\n%s", name, l, want, out)
				}
			}
			for name, want := range tt.warns {
				if l := lines[name]; !strings.HasPrefix(l, "WARN") || !strings.Contains(l, want) {
					t.Errorf("%s: %q, want WARN with %q\n%s", name, l, want, out)
				}
			}
			if tt.warns["environment"] != "" && !strings.Contains(out, "`cardshare guest setup -F ") {
				t.Errorf("the environment fix does not carry -F:\n%s", out)
			}
			for _, name := range tt.skips {
				if !strings.HasPrefix(lines[name], "SKIP") {
					t.Errorf("%s: %q, want SKIP", name, lines[name])
				}
			}
			if !strings.Contains(out, "fix: ") || !strings.Contains(out, tt.fix) {
				t.Errorf("no fix with %q:\n%s", tt.fix, out)
			}
			if n := bytes.Count([]byte(out), []byte("FAIL")); n != len(tt.fails) {
				t.Errorf("%d FAIL lines, want %d:\n%s", n, len(tt.fails), out)
			}
		})
	}
}
