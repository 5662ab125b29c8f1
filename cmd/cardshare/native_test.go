//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/testenv"
)

// cliProcess is a cardshare subprocess (TestMain's command) with its own
// environment: the native backend's libpcsclite reads PCSCLITE_CSOCK_NAME
// once per process, so each native test runs cardshare in its own.
type cliProcess struct {
	cmd         *exec.Cmd
	out, err    logtest.Buffer
	done        chan error
	stopOnce    sync.Once
	stoppedWith error
}

func startCLI(t *testing.T, env []string, args ...string) *cliProcess {
	t.Helper()
	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatalf("cardshare command of TestMain: %v", err)
	}
	p := &cliProcess{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitOut waits until stdout matches re and returns the last submatch.
func (p *cliProcess) waitOut(t *testing.T, re string) string {
	t.Helper()
	waitFor(t, &p.out, re, p.done, &p.err)
	return regexp.MustCompile(re).FindStringSubmatch(p.out.String())[regexp.MustCompile(re).NumSubexp()]
}

// stop interrupts the process as Ctrl-C does and returns how it exited.
func (p *cliProcess) stop(t *testing.T) error {
	t.Helper()
	p.stopOnce.Do(func() {
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case p.stoppedWith = <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			p.stoppedWith = fmt.Errorf("did not stop 20 s after SIGINT")
		}
	})
	return p.stoppedWith
}

// TestCLIExposeNative runs `cardshare expose --backend native` to the test
// sshd, with no pcscd socket for cardshare to dial: its native backend
// (internal/nativepcsc over the real libpcsclite, through purego) serves
// the guest. The guest's own libpcsclite (the C client and pcsc_scan)
// sees a blocking wait end on card insertion, gets "Hello world!", sees
// the removal, and 20 clients at once all get their answer.
func TestCLIExposeNative(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sock := filepath.Join(s.Home, "native.comm")
	missing := filepath.Join(t.TempDir(), "missing.comm")
	cs := startCLI(t, []string{"PCSCLITE_CSOCK_NAME=" + p.Socket},
		"expose", "-v", "--backend", "native", "--pcscd-socket", missing, "-F", s.ConfigFile, "--guest-socket", sock, s.HostAlias)
	cs.waitOut(t, "export PCSCLITE_CSOCK_NAME="+regexp.QuoteMeta(sock))
	client := testenv.BuildClient(t)
	env := []string{"PCSCLITE_CSOCK_NAME=" + sock}

	// A blocking wait in the guest ends when the card arrives.
	wait := exec.Command(client, "wait", "30")
	wait.Env = env
	stdout, _ := wait.StdoutPipe()
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "waiting: ") {
		t.Fatalf("wait: first line %q", lines.Text())
	}
	card := p.InsertCard(t)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "changed: ") {
		t.Errorf("wait after insert: %q", lines.Text())
	}
	wait.Wait()

	mustHelloCLI(t, sock)
	scan := exec.Command("/usr/bin/pcsc_scan", "-r")
	scan.Env = env
	if out, err := scan.CombinedOutput(); err != nil || !strings.Contains(string(out), testenv.VPCDReader) {
		t.Errorf("pcsc_scan -r: %q, %v", out, err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			out, err := testenv.RunClient(t, client, sock, "hello")
			if err == nil && !strings.Contains(out, "Hello world!") {
				err = fmt.Errorf("output %q", out)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("one of 20 clients at once: %v", err)
		}
	}

	// The removal ends a wait too.
	wait = exec.Command(client, "wait", "30")
	wait.Env = env
	stdout, _ = wait.StdoutPipe()
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	lines = bufio.NewScanner(stdout)
	lines.Scan()
	p.RemoveCard(t, card)
	if !lines.Scan() || !strings.Contains(lines.Text(), "changed: ") {
		t.Errorf("wait after removal: %q", lines.Text())
	}
	wait.Wait()

	if err := cs.stop(t); err != nil {
		t.Fatalf("expose: %v\n%s", err, &cs.err)
	}
	log := cs.err.String()
	for _, want := range []string{"backend=native", "forward up"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if found := testenv.CardDataIn(log); len(found) > 0 {
		t.Errorf("card data in the log: %q", found)
	}
}

// TestCLIRelayNative: `relay serve --backend native` serves a paired
// guest's agent from the native backend, and `status --json` says so.
func TestCLIRelayNative(t *testing.T) {
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

	serve := startCLI(t, []string{"PCSCLITE_CSOCK_NAME=" + p.Socket}, "relay", "serve", "--backend", "native", "--listen", "127.0.0.1:0",
		"--state-dir", state, "--pcscd-socket", filepath.Join(sockDir, "missing.comm"), "--control-socket", ctl)
	addr := serve.waitOut(t, `relay: listening on (\S+)`)
	code, out, errs := cli(t, "", "relay", "pair", "--state-dir", state, "vm1")
	if code != 0 {
		t.Fatalf("pair: exit %d: %s", code, errs)
	}
	token := regexp.MustCompile(`cs1-\S+`).FindString(out)
	if code, out, errs := cli(t, "", "relay", "join", "--credentials", creds, "--token", token, addr); code != 0 {
		t.Fatalf("join: exit %d\n%s%s", code, out, errs)
	}
	agent := runBackground(t, "relay", "agent", "--credentials", creds, "--socket", sock)
	agent.waitOut(t, `export PCSCLITE_CSOCK_NAME=(\S+)`)
	mustHelloCLI(t, sock)

	st, err := statusJSON(t, ctl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Host.Backend != "native" || !strings.HasPrefix(st.Host.Source, "native PC/SC (libpcsclite") || st.Host.PCSCDSocket != "" || st.Host.Protocol != "4.6" {
		t.Errorf("status host %+v, want the native backend", st.Host)
	}
	if err := serve.stop(t); err != nil {
		t.Errorf("serve: %v\n%s", err, &serve.err)
	}
}

// TestCLIDoctorNative: with no pcscd socket at --pcscd-socket but a
// libpcsclite that reaches pcscd, doctor says that auto picks the native
// backend and why, and checks it and its readers instead of the socket.
func TestCLIDoctorNative(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.comm")
	cmd := exec.Command(bin, "doctor", "--pcscd-socket", missing)
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+p.Socket)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	lines := doctorLines(string(out))
	for name, want := range map[string]string{
		"backend":    "OK    backend       auto picks native: the pcscd socket " + missing + " does not answer (pcsc: pcscd is not running",
		"host PC/SC": "native PC/SC (libpcsclite.so.1) answers",
		"readers":    "2 readers: " + testenv.VPCDReader + "; " + testenv.VPCDSecondReader,
	} {
		if !strings.Contains(lines[name], want) {
			t.Errorf("%s: %q, want %q\n%s", name, lines[name], want, out)
		}
	}
	if _, ok := lines["host pcscd"]; ok {
		t.Errorf("the socket was checked too:\n%s", out)
	}
}

// TestUpNative: `cardshare up` with host.backend native serves a guest
// from the native backend, says so in its status, and a reload that
// changes nothing keeps the same source and the guest's connections.
func TestUpNative(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := filepath.Join(dir, "config.yaml")
	ctl := filepath.Join(dir, "run", "control.sock")
	writeFile(t, cfg, fmt.Sprintf("host:\n  backend: native\n  pcscd_socket: %s\n  ssh_config: %s\nguests:\n  - destination: %s\n",
		filepath.Join(dir, "missing.comm"), s.ConfigFile, s.HostAlias))
	up := startCLI(t, []string{"PCSCLITE_CSOCK_NAME=" + p.Socket}, "up", "--config", cfg, "--control-socket", ctl)
	st := waitStatus(t, ctl, "the guest up", func(d *statusDoc) bool { return d.allUp(s.HostAlias) })
	if st.Host.Backend != "native" || st.Host.PCSCDSocket != "" || st.guest(s.HostAlias).HostProtocol != "4.6" {
		t.Errorf("status: host %+v, guest %+v", st.Host, st.guest(s.HostAlias))
	}
	sock := st.guest(s.HostAlias).Socket
	mustHelloCLI(t, sock)

	// A wait holds a connection open across the reload.
	wait := exec.Command(testenv.BuildClient(t), "wait", "30")
	wait.Env = []string{"PCSCLITE_CSOCK_NAME=" + sock}
	stdout, _ := wait.StdoutPipe()
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	defer wait.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Scan()
	before := *waitStatus(t, ctl, "the wait's connection open", func(d *statusDoc) bool { return d.guest(s.HostAlias).OpenConnections >= 1 }).guest(s.HostAlias)
	up.cmd.Process.Signal(syscall.SIGHUP)
	now := waitStatus(t, ctl, "the reload", func(d *statusDoc) bool { return d.Loaded.After(st.Loaded) && d.allUp(s.HostAlias) }).guest(s.HostAlias)
	if now.Since != before.Since || now.OpenConnections < 1 {
		t.Errorf("reload touched the guest: before %+v, after %+v", before, now)
	}
	mustHelloCLI(t, sock)
	if err := up.stop(t); err != nil {
		t.Errorf("up: %v\n%s", err, &up.err)
	}
}
