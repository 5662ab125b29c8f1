//go:build linux

package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/vcard"
	"golang.org/x/sys/unix"
)

// runHello runs the client's hello mode and checks the card's answer.
func runHello(t *testing.T, bin string, p *PCSCD, args ...string) {
	t.Helper()
	out, err := RunClient(t, bin, p.Socket, append(args, "hello")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reader: " + VPCDReader + "\n", "response: Hello world!\n", "sw: 9000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("hello printed %q, want it to contain %q", out, want)
		}
	}
}

// wantClientError runs the client and checks that it fails with code, the
// PC/SC return code it prints.
func wantClientError(t *testing.T, bin, socket string, code string, args ...string) {
	t.Helper()
	out, err := RunClient(t, bin, socket, args...)
	var ce *ClientError
	if !errors.As(err, &ce) {
		t.Fatalf("client %q = %q, %v; want a *ClientError", args, out, err)
	}
	if ce.ExitCode() != 1 || !strings.Contains(ce.Stderr, code) {
		t.Errorf("client %q failed with %v; want exit status 1 and %s", args, ce, code)
	}
}

func TestPCSCDHello(t *testing.T) {
	t.Parallel()
	bin := BuildClient(t)
	p := StartPCSCD(t)

	out, err := RunClient(t, bin, p.Socket, "list")
	if err != nil {
		t.Fatal(err)
	}
	if want := VPCDReader + "\n" + VPCDSecondReader + "\n"; out != want {
		t.Errorf("list = %q, want %q", out, want)
	}
	wantClientError(t, bin, p.Socket, "(0x8010000C)", "hello") // SCARD_E_NO_SMARTCARD

	p.InsertCard(t)
	runHello(t, bin, p)
	runHello(t, bin, p, "-r", VPCDReader)
	wantClientError(t, bin, p.Socket, "(0x8010000C)", "-r", VPCDSecondReader, "hello")
	wantClientError(t, bin, p.Socket, "(0x80100009)", "-r", "No Such Reader", "hello") // SCARD_E_UNKNOWN_READER
}

func TestPCSCDCardInSecondReader(t *testing.T) {
	t.Parallel()
	bin := BuildClient(t)
	p := StartPCSCD(t)
	p.InsertCardIn(t, VPCDSecondReader)
	out, err := RunClient(t, bin, p.Socket, "-r", VPCDSecondReader, "hello")
	if err != nil || !strings.Contains(out, "response: Hello world!\n") {
		t.Errorf("hello in %s = %q, %v", VPCDSecondReader, out, err)
	}
	wantClientError(t, bin, p.Socket, "(0x8010000C)", "hello")
}

// TestPCSCDWait checks that a client blocked in SCardGetStatusChange sees
// the card come and go.
func TestPCSCDWait(t *testing.T) {
	t.Parallel()
	bin := BuildClient(t)
	p := StartPCSCD(t)

	// waitFor starts "wait", runs change once the client waits, and returns
	// the state the client reports.
	waitFor := func(change func()) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), ClientTimeout)
		defer cancel()
		cmd := ClientCommand(ctx, bin, p.Socket, "wait", "20")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), "waiting: ") {
			cmd.Wait()
			t.Fatalf("wait: first line %q, %v; stderr %q", lines.Text(), lines.Err(), stderr.String())
		}
		t.Log(lines.Text())
		change()
		lines.Scan()
		changed := lines.Text()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("wait: %v; stderr %q", err, stderr.String())
		}
		t.Log(changed)
		return changed
	}

	var card *vcard.Card
	got := waitFor(func() { card = p.InsertCard(t) })
	if !strings.HasPrefix(got, "changed: ") || !strings.Contains(got, "PRESENT") || !strings.Contains(got, "events=1") {
		t.Errorf("after insertion the client printed %q, want PRESENT and events=1", got)
	}
	got = waitFor(func() { p.RemoveCard(t, card) })
	if !strings.Contains(got, "EMPTY") || !strings.Contains(got, "events=2") {
		t.Errorf("after removal the client printed %q, want EMPTY and events=2", got)
	}
	// A card inserted right after Close, before pcscd noticed the removal.
	p.InsertCard(t).Close()
	p.InsertCard(t)
	runHello(t, bin, p)
}

// TestPCSCDTwoInstances runs two pcscd at once: each has its own socket,
// readers and cards, although both vpcd listen on the same port.
func TestPCSCDTwoInstances(t *testing.T) {
	t.Parallel()
	bin := BuildClient(t)
	a, b := StartPCSCD(t), StartPCSCD(t)
	if a.Socket == b.Socket || a.PID == b.PID {
		t.Fatalf("instances share socket %s or PID %d", a.Socket, a.PID)
	}
	a.InsertCard(t)
	runHello(t, bin, a)
	wantClientError(t, bin, b.Socket, "(0x8010000C)", "hello")
	b.InsertCard(t)
	runHello(t, bin, b)
	a.Stop()
	runHello(t, bin, b)
}

// TestPCSCDIsolation checks that pcscd serves the harness's socket and keeps
// its files out of the host's /run/pcscd.
func TestPCSCDIsolation(t *testing.T) {
	t.Parallel()
	p := StartPCSCD(t)
	p.InsertCard(t)
	runHello(t, BuildClient(t), p)

	// pcscd's fd 3 is the harness's listening socket.
	var ino uint64
	rc, err := p.ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err == nil {
			ino = st.Ino
		}
	})
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", p.PID))
	if want := fmt.Sprintf("socket:[%d]", ino); err != nil || link != want {
		t.Errorf("pcscd's fd 3 is %q, %v; want %q", link, err, want)
	}

	// pcscd wrote its PID file into the private /run, and made no socket.
	b, err := os.ReadFile(filepath.Join(p.RunDir, "pcscd", "pcscd.pid"))
	if pid, _ := strconv.Atoi(strings.TrimRight(string(b), "\x00\n")); err != nil || pid != p.PID {
		t.Errorf("private pcscd.pid = %q, %v; want %d", b, err, p.PID)
	}
	if _, err := os.Stat(filepath.Join(p.RunDir, "pcscd", "pcscd.comm")); err == nil {
		t.Error("pcscd created a socket of its own in its /run/pcscd")
	}
	// The host's PID file, if any, belongs to another pcscd.
	if b, err := os.ReadFile("/run/pcscd/pcscd.pid"); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimRight(string(b), "\x00\n")); pid == p.PID {
			t.Error("the test pcscd wrote the host's /run/pcscd/pcscd.pid")
		}
	}

	// vpcd listens in pcscd's network namespace, not in the test's.
	ns := tcpListeners(t, fmt.Sprintf("/proc/%d/net/tcp", p.PID))
	host := tcpListeners(t, "/proc/self/net/tcp")
	for _, port := range []int{vcard.DefaultPort, vcard.DefaultPort + 1} {
		inode, ok := ns[port]
		if !ok {
			t.Errorf("vpcd does not listen on port %d in pcscd's namespace", port)
		}
		for _, i := range host {
			if i == inode {
				t.Errorf("vpcd's port %d is in the test's network namespace", port)
			}
		}
	}
}

// tcpListeners reads a /proc/net/tcp table and returns the inode of the
// listening socket on each port.
func tcpListeners(t *testing.T, path string) map[int]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int]string)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
			m[int(port)] = f[9]
		}
	}
	return m
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestPCSCDStopKillRestart(t *testing.T) {
	t.Parallel()
	bin := BuildClient(t)
	p := StartPCSCD(t)
	p.InsertCard(t)
	runHello(t, bin, p)

	pid := p.PID
	p.Stop()
	if !processGone(pid) {
		t.Errorf("pcscd (pid %d) still exists after Stop", pid)
	}
	if _, err := os.Stat(p.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Stop: %v, want it gone", err)
	}
	wantClientError(t, bin, p.Socket, "(0x8010001D)", "list") // SCARD_E_NO_SERVICE
	p.Stop()                                                  // again: no-op

	p.Restart(t)
	if p.PID == pid || processGone(p.PID) {
		t.Errorf("after Restart PID %d (was %d)", p.PID, pid)
	}
	wantClientError(t, bin, p.Socket, "(0x8010000C)", "hello") // the card is gone
	p.InsertCard(t)
	runHello(t, bin, p)

	// Restart of a running pcscd keeps the socket file in place.
	pid = p.PID
	p.Restart(t)
	if !processGone(pid) {
		t.Errorf("old pcscd (pid %d) still exists after Restart", pid)
	}
	p.InsertCard(t)
	runHello(t, bin, p)

	pid = p.PID
	p.Kill()
	if !processGone(pid) {
		t.Errorf("pcscd (pid %d) still exists after Kill", pid)
	}
	wantClientError(t, bin, p.Socket, "(0x8010001D)", "list")
}

// TestPCSCDBench measures direct round trips: real pcscd, vpcd, the Go card
// and libpcsclite, nothing in between. A delayed-ACK stall between vpcd and
// the card would show as ~25 APDU/s and every round trip over 10 ms.
func TestPCSCDBench(t *testing.T) {
	bin := BuildClient(t)
	p := StartPCSCD(t)
	p.InsertCard(t)
	start := time.Now()
	out, err := RunClient(t, bin, p.Socket, "bench", "2000")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBench(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("direct: %v (%s; client ran %v)", b, strings.TrimSpace(out), time.Since(start).Round(time.Millisecond))
	if b.Count != 2000 || b.Over10ms > b.Count/20 || b.PerSec < 500 {
		t.Errorf("direct bench: %v; want 2000 round trips, at most 5%% over 10 ms and at least 500 APDU/s", b)
	}
}

func TestParseBench(t *testing.T) {
	b, err := ParseBench("count=2000 median_us=95.5 p99_us=150.0 max_us=900.2 apdu_per_s=10000 over_10ms=3 total_ms=200.1\n")
	want := Bench{Count: 2000, MedianUS: 95.5, P99US: 150, MaxUS: 900.2, PerSec: 10000, Over10ms: 3, TotalMS: 200.1}
	if err != nil || b != want {
		t.Errorf("ParseBench = %+v, %v; want %+v", b, err, want)
	}
	if _, err := ParseBench("Hello world!"); err == nil {
		t.Error("ParseBench accepted a line that is not a bench result")
	}
}
