package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/testenv"
)

// sshConfig writes a client config for s with the given overrides.
func sshConfig(t *testing.T, s *testenv.SSHD, knownHosts, key string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	body := fmt.Sprintf(`Host guest
	HostName 127.0.0.1
	Port %d
	User %s
	IdentityFile %s
	IdentitiesOnly yes
	IdentityAgent none
	UserKnownHostsFile %s
`, s.Port, s.User, key, knownHosts)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// cli runs cardshare in-process until it exits or until stdout matches
// stopAt, when it is interrupted as by Ctrl-C.
func cli(t *testing.T, stopAt string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb logtest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), &out, &errb) }()
	for {
		select {
		case code := <-done:
			return code, out.String(), errb.String()
		case <-time.After(50 * time.Millisecond):
			if stopAt != "" && strings.Contains(out.String(), stopAt) {
				cancel()
				return <-done, out.String(), errb.String()
			}
		}
	}
}

func TestCLIExposeAndInterrupt(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	code, out, errs := cli(t, "export PCSCLITE_CSOCK_NAME=", "expose", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs)
	}
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	if want := "export PCSCLITE_CSOCK_NAME=" + sock + "\n"; !strings.Contains(out, want) {
		t.Errorf("stdout %q lacks %q", out, want)
	}
	for _, want := range []string{"host PC/SC", "backend=socket", "protocol=4.4", "forward up", "removed guest socket"} {
		if !strings.Contains(errs, want) {
			t.Errorf("log lacks %q:\n%s", want, errs)
		}
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("guest socket left behind after interrupt")
	}
}

// Bad input ends in one error line and one hint, exit code 1, never a
// stack trace.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	noForward := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	stranger := filepath.Join(t.TempDir(), "id_ed25519")
	writeKey(t, stranger)

	tests := []struct {
		name   string
		args   []string
		errRe  string
		hintRe string
	}{
		{"unknown host", []string{"-F", sshConfig(t, s, empty, s.ClientKey), "guest"},
			"host key for .* is not known", "--accept-new \\(or `ssh -F [^ ]*ssh_config guest` once\\)"},
		{"auth refused", []string{"-F", sshConfig(t, s, s.KnownHosts, stranger), "guest"},
			"authentication as .* failed", "make sure `ssh -F [^ ]*ssh_config guest` logs in .*ssh-add"},
		{"no forwarding", []string{"-F", noForward.ConfigFile, noForward.HostAlias},
			"guest sshd refused the socket forward", "AllowStreamLocalForwarding yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"expose", "--pcscd-socket", p.Socket}, tt.args...)
			code, _, errs := cli(t, "", args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, errs)
			}
			var errLines, hintLines []string
			for _, l := range strings.Split(errs, "\n") {
				switch {
				case strings.HasPrefix(l, "cardshare: error: "):
					errLines = append(errLines, l)
				case strings.HasPrefix(l, "cardshare: hint: "):
					hintLines = append(hintLines, l)
				}
			}
			if len(errLines) != 1 || len(hintLines) != 1 {
				t.Fatalf("want one error and one hint line, got:\n%s", errs)
			}
			if !match(t, tt.errRe, errLines[0]) || !match(t, tt.hintRe, hintLines[0]) {
				t.Errorf("stderr:\n%s\nwant error ~ %q, hint ~ %q", errs, tt.errRe, tt.hintRe)
			}
			if strings.Contains(errs, "goroutine ") || strings.Contains(errs, "panic") {
				t.Errorf("stack trace in stderr:\n%s", errs)
			}
		})
	}
}

func match(t *testing.T, re, s string) bool {
	t.Helper()
	ok, err := filepathMatchRegexp(re, s)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func writeKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func filepathMatchRegexp(re, s string) (bool, error) { return regexp.MatchString(re, s) }
