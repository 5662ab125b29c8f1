package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// A `cardshare expose -v` process, in each log format and with the audit log
// of every PC/SC call, relays a full hello-world exchange and a short
// transmit loop, and its stderr holds none of the card's bytes: debug
// logging shows connections and byte counts, the audit log commands, readers,
// return codes and sizes.
func TestCLIExposeLogsNoCardData(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatalf("cardshare command of TestMain: %v", err)
	}
	for i, flags := range [][]string{{"--log-format", "text"}, {"--log-format", "json"}, {"--audit"}} {
		name := strings.Join(flags, " ")
		sock := filepath.Join(s.Home, "logs"+strconv.Itoa(i)+".comm")
		var stdout, stderr logtest.Buffer
		args := append([]string{"expose", "-v", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, "--guest-socket", sock}, flags...)
		cmd := exec.Command(bin, append(args, s.HostAlias)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		waitFor(t, &stdout, "export PCSCLITE_CSOCK_NAME="+regexp.QuoteMeta(sock), done, &stderr)
		mustHelloCLI(t, sock)
		if out, err := testenv.RunClient(t, testenv.BuildClient(t), sock, "bench", "20"); err != nil {
			t.Fatalf("bench: %v: %s", err, out)
		}
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: expose exited with %v:\n%s", name, err, &stderr)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: expose did not stop 15 s after SIGINT", name)
		}
		log := stderr.String()
		if !strings.Contains(log, "DEBUG") || !strings.Contains(log, "guest connection closed") {
			t.Fatalf("%s: stderr has no debug events for the connections:\n%s", name, log)
		}
		if flags[0] == "--audit" && !strings.Contains(log, "SCARD_TRANSMIT") {
			t.Fatalf("%s: stderr has no audit line for SCARD_TRANSMIT:\n%s", name, log)
		}
		if bad := logtest.CheckJSON(strings.NewReader(log)); len(bad) > 0 {
			t.Errorf("%s: JSON log lines with a repeated key:\n%s", name, strings.Join(bad, "\n"))
		}
		if name == "--log-format json" && !strings.Contains(log, `"guest":"`+s.HostAlias+`"`) {
			t.Errorf("%s: no JSON line names the guest %s:\n%s", name, s.HostAlias, log)
		}
		if found := testenv.CardDataIn(log); len(found) > 0 {
			t.Errorf("%s: card data in the debug log: %q\n%s", name, found, log)
		}
	}
}

// waitFor waits until out matches re, failing if the process exits first.
func waitFor(t *testing.T, out *logtest.Buffer, re string, done chan error, stderr *logtest.Buffer) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for !rx.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("exited (%v) before printing %q; stderr:\n%s", err, re, stderr)
		case <-deadline:
			t.Fatalf("no %q within 30 s; stderr:\n%s", re, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
