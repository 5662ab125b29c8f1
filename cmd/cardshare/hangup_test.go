//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/testenv"
)

// proc is a cardshare process of TestMain's command, for signals.
type proc struct {
	cmd         *exec.Cmd
	out, err    logtest.Buffer
	done        chan error
	description string
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatalf("cardshare command of TestMain: %v", err)
	}
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1), description: strings.Join(args[:2], " ")}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			p.done <- err
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
		}
	})
	return p
}

func (p *proc) waitOut(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.out.String() + p.err.String()); m != nil {
			return m[len(m)-1]
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited (%v) before %q; stderr:\n%s", p.description, err, re, &p.err)
		case <-deadline:
			t.Fatalf("%s: no %q within 30 s; stderr:\n%s", p.description, re, &p.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exited waits for the process to end and returns its error.
func (p *proc) exited(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("%s still running 15 s after the signal; stderr:\n%s", p.description, &p.err)
		return nil
	}
}

// SIGHUP (a closed terminal) never kills a long-running command without
// its cleanup: expose and relay agent stop as on Ctrl-C and remove their
// sockets; relay serve reloads the guest list and keeps running.
func TestCLIHangup(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})

	expose := startProc(t, "expose", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, s.HostAlias)
	sock := expose.waitOut(t, `export PCSCLITE_CSOCK_NAME=(\S+)`)
	expose.cmd.Process.Signal(syscall.SIGHUP)
	if err := expose.exited(t); err != nil {
		t.Errorf("expose after SIGHUP: %v; stderr:\n%s", err, &expose.err)
	}
	for _, want := range []string{"SIGHUP: stopping", "removed guest socket"} {
		if !strings.Contains(expose.err.String(), want) {
			t.Errorf("expose log lacks %q:\n%s", want, &expose.err)
		}
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("guest socket %s left behind after SIGHUP", sock)
	}
	// Its default directory goes too: nothing of cardshare's stays.
	if _, err := os.Lstat(filepath.Dir(sock)); err == nil {
		t.Errorf("guest socket directory %s left behind", filepath.Dir(sock))
	}

	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state, creds := filepath.Join(dir, "host"), filepath.Join(dir, "creds.json")
	ctl, agentSock := filepath.Join(dir, "ctl", "relay.sock"), filepath.Join(dir, "g", "pcscd.comm")
	serve := startProc(t, "relay", "serve", "--listen", "127.0.0.1:0", "--state-dir", state, "--pcscd-socket", p.Socket, "--control-socket", ctl)
	addr := serve.waitOut(t, `relay: listening on (\S+)`)
	serve.cmd.Process.Signal(syscall.SIGHUP)
	serve.waitOut(t, `guest list reloaded`)

	code, out, errs := cli(t, "", "relay", "pair", "--state-dir", state, "vm1")
	if code != 0 {
		t.Fatalf("pair: exit %d: %s", code, errs)
	}
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)
	if code, out, errs := cli(t, "", "relay", "join", "--credentials", creds, "--token", token, addr); code != 0 {
		t.Fatalf("join: exit %d\n%s%s", code, out, errs)
	}
	agent := startProc(t, "relay", "agent", "--credentials", creds, "--socket", agentSock)
	agent.waitOut(t, `export PCSCLITE_CSOCK_NAME=`)
	agent.cmd.Process.Signal(syscall.SIGHUP)
	if err := agent.exited(t); err != nil {
		t.Errorf("relay agent after SIGHUP: %v; stderr:\n%s", err, &agent.err)
	}
	if _, err := os.Lstat(agentSock); err == nil {
		t.Errorf("agent socket left behind after SIGHUP")
	}

	select {
	case err := <-serve.done:
		t.Fatalf("relay serve ended (%v) after SIGHUP; stderr:\n%s", err, &serve.err)
	default:
	}
	serve.cmd.Process.Signal(syscall.SIGTERM)
	if err := serve.exited(t); err != nil {
		t.Errorf("relay serve after SIGTERM: %v", err)
	}
	if _, err := os.Lstat(ctl); err == nil {
		t.Errorf("relay.sock left behind")
	}
}
