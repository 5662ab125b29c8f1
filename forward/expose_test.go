//go:build unix

package forward_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// End-to-end tests: real pcscd with the Go test card in vpcd, real sshd on
// loopback as the guest, and the real libpcsclite (a C client and pcsc_scan)
// as the guest's program, running as the guest user.

type exposed struct {
	events chan forward.Event
	log    *logtest.Buffer
	cancel context.CancelFunc
	done   chan error
}

// logged waits up to 5 s for a log line containing s: a connection's
// closing line is written after its peer has seen the close.
func (e *exposed) logged(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(e.log.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// expose runs forward.Expose for the guests until the test ends.
func expose(t *testing.T, p *testenv.PCSCD, guests []forward.Guest, tune func(*forward.Config)) *exposed {
	t.Helper()
	return exposeSocket(t, p.Socket, guests, tune)
}

func exposeSocket(t *testing.T, hostSocket string, guests []forward.Guest, tune func(*forward.Config)) *exposed {
	t.Helper()
	e := &exposed{events: make(chan forward.Event, 100), log: new(logtest.Buffer), done: make(chan error, 1)}
	daemon, err := pcsc.Probe(context.Background(), hostSocket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := forward.DefaultConfig()
	cfg.HostSocket = hostSocket
	cfg.Daemon = daemon
	cfg.Logger = logtest.New(t, e.log, slog.LevelDebug)
	cfg.MinBackoff = 100 * time.Millisecond
	cfg.MaxBackoff = time.Second
	cfg.OnEvent = func(ev forward.Event) {
		select {
		case e.events <- ev:
		default:
		}
	}
	if tune != nil {
		tune(cfg)
	}
	var ctx context.Context
	ctx, e.cancel = context.WithCancel(context.Background())
	go func() { e.done <- forward.Expose(ctx, guests, cfg) }()
	t.Cleanup(func() {
		e.cancel()
		<-e.done
		if t.Failed() {
			t.Logf("cardshare log:\n%s", e.log)
		}
	})
	return e
}

// wait returns the next event of state s, failing after a minute.
func (e *exposed) wait(t *testing.T, s forward.State) forward.Event {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-e.events:
			if ev.State == s {
				return ev
			}
			if ev.State == forward.StateFailed && s != forward.StateFailed {
				t.Fatalf("guest %s failed: %v", ev.Guest, ev.Err)
			}
		case <-timeout:
			t.Fatalf("no %s event within a minute; log:\n%s", s, e.log)
		}
	}
}

func (e *exposed) stop(t *testing.T) error {
	t.Helper()
	e.cancel()
	select {
	case err := <-e.done:
		e.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Expose did not return within 30 s of cancel")
		return nil
	}
}

func guestOf(t *testing.T, s *testenv.SSHD, socket string) forward.Guest {
	t.Helper()
	target, err := sshdial.Resolve(context.Background(), s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	return forward.Guest{Name: s.HostAlias, Target: target, Socket: socket}
}

// guestClient runs the C client (real libpcsclite) as the guest user against
// the guest socket.
func guestClient(t *testing.T, s *testenv.SSHD, socket string, args ...string) (string, error) {
	t.Helper()
	return runAsGuest(t, s, socket, clientBin(t, s), args...)
}

// clientBin returns the C client, copied where the guest user can run it.
func clientBin(t *testing.T, s *testenv.SSHD) string {
	t.Helper()
	bin := filepath.Join(s.Dir, "pcscclient")
	if _, err := os.Stat(bin); err != nil {
		src, err := os.ReadFile(testenv.BuildClient(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

func runAsGuest(t *testing.T, s *testenv.SSHD, socket, bin string, args ...string) (string, error) {
	t.Helper()
	return runAs(t, s.UID, s.GID, s.Home, socket, bin, args...)
}

func runAs(t *testing.T, uid, gid int, home, socket, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "PCSCLITE_CSOCK_NAME=" + socket}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %w: %s", filepath.Base(bin), args, err, stderr.String())
	}
	return string(out), nil
}

func mustHello(t *testing.T, s *testenv.SSHD, socket string) {
	t.Helper()
	out, err := guestClient(t, s, socket, "hello")
	if err != nil {
		t.Fatalf("hello through the forward: %v", err)
	}
	if !strings.Contains(out, "Hello world!") || !strings.Contains(out, "9000") {
		t.Fatalf("hello output %q lacks Hello world! and 9000", out)
	}
}

func TestExposeHelloWorld(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)

	// The default path is in a private directory of the login user.
	want := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	if up.Socket != want {
		t.Errorf("socket %s, want %s", up.Socket, want)
	}
	checkOwnerOnly(t, s, up.Socket)
	if up.GuestClient == nil || up.GuestClient.Version != pcsc.V44 {
		t.Errorf("guest client = %v, want Debian's 1.9.9 (protocol 4.4)", up.GuestClient)
	}

	mustHello(t, s, up.Socket)
	out, err := runAsGuest(t, s, up.Socket, "/usr/bin/pcsc_scan", "-r")
	if err != nil || !strings.Contains(out, testenv.VPCDReader) {
		t.Errorf("pcsc_scan -r: %q, %v", out, err)
	}

	// Ctrl-C: Expose returns nil and the guest socket is gone.
	if err := e.stop(t); err != nil {
		t.Fatalf("Expose: %v", err)
	}
	if _, err := os.Lstat(up.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest socket after stop: %v, want it removed", err)
	}
	if strings.Contains(e.log.String(), "Hello") || strings.Contains(e.log.String(), "48656c6c6f") {
		t.Errorf("card data in the log")
	}
}

// checkOwnerOnly asserts the socket belongs to the guest user, mode 0600,
// in a directory of mode 0700.
func checkOwnerOnly(t *testing.T, s *testenv.SSHD, sock string) {
	t.Helper()
	for path, want := range map[string]os.FileMode{sock: 0o600, filepath.Dir(sock): 0o700} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != want || int(st.Uid) != s.UID {
			t.Errorf("%s: mode %v uid %d, want %v and uid %d", path, fi.Mode(), st.Uid, want, s.UID)
		}
	}
}

func TestExposeXDGRuntimeDir(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	dir, err := os.MkdirTemp("", "xdg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"SetEnv XDG_RUNTIME_DIR=" + dir}})
	os.Chown(dir, s.UID, s.GID)
	os.Chmod(dir, 0o700)
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	if want := filepath.Join(dir, "cardshare", "pcscd.comm"); up.Socket != want {
		t.Errorf("socket %s, want %s", up.Socket, want)
	}
	mustHello(t, s, up.Socket)
}

// A socket left by a killed run refuses connections; expose removes it.
func TestExposeRemovesStaleSocket(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	s.Run(t, "mkdir -m 700 .cardshare")
	makeStaleSocket(t, sock, s.UID, s.GID)

	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	if !strings.Contains(e.log.String(), "removed stale guest socket") {
		t.Errorf("no log line about the stale socket:\n%s", e.log)
	}
	mustHello(t, s, up.Socket)
}

func makeStaleSocket(t *testing.T, path string, uid, gid int) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	os.Chown(path, uid, gid)
}

// A live listener at the path is never stolen.
func TestExposeSocketInUse(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")
	s.Run(t, "mkdir -m 700 .cardshare")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chown(sock, s.UID, s.GID)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(make([]byte, 12)) // answers like a pcscd would
			c.Close()
		}
	}()
	started := time.Now()
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	ev := e.wait(t, forward.StateFailed)
	if !errors.Is(ev.Err, unixsock.ErrSocketInUse) {
		t.Fatalf("err = %v, want ErrSocketInUse", ev.Err)
	}
	t.Logf("fault: foreign listener: refused after %v: %v", time.Since(started).Round(time.Millisecond), ev.Err)
	err = e.stop(t)
	if !errors.Is(err, unixsock.ErrSocketInUse) {
		t.Errorf("Expose = %v, want ErrSocketInUse", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the foreign socket was touched: %v", err)
	}
}

func TestExposeForwardingDisabled(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	ev := e.wait(t, forward.StateFailed)
	if !errors.Is(ev.Err, guestsock.ErrForwardRefused) {
		t.Fatalf("err = %v, want ErrForwardRefused", ev.Err)
	}
}

// The guest's sshd dies (SIGKILL) with a client connected, then sshd is
// restarted: the client gets an error, not a hang, and the forward comes
// back by itself.
func TestExposeReconnects(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)

	// A client in a blocking wait when the connection dies.
	waitErr := make(chan error, 1)
	go func() {
		_, err := guestClient(t, s, up.Socket, "wait", "30")
		waitErr <- err
	}()
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	s.Kill(syscall.SIGKILL)
	if n := s.KillSessions(syscall.SIGKILL); n == 0 {
		t.Fatal("no sshd session to kill")
	}
	var saw error
	select {
	case saw = <-waitErr:
		if saw == nil {
			t.Error("the waiting client succeeded after its connection died")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting client hung after the guest's sshd died")
	}
	failed := time.Since(killed)
	e.wait(t, forward.StateBackoff)
	restarted := time.Now()
	s.Restart(t)
	up = e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	if saw != nil {
		t.Logf("fault: client saw %q after %v; forward up again %v after sshd restarted",
			pcscError(saw.Error()), failed.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	}
}

// A guest that freezes (SIGSTOP, as a hung VM) is noticed by the keepalive.
func TestExposeKeepaliveDetectsFrozenGuest(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, func(c *forward.Config) {
		c.KeepaliveInterval = 500 * time.Millisecond
		c.KeepaliveTimeout = time.Second
	})
	e.wait(t, forward.StateUp)
	frozen := time.Now()
	s.KillSessions(syscall.SIGSTOP)
	ev := e.wait(t, forward.StateBackoff)
	if !strings.Contains(ev.Err.Error(), "keepalive") {
		t.Errorf("lost because %v, want a keepalive timeout", ev.Err)
	}
	detected := time.Since(frozen)
	// The frozen session still holds the old socket; the new connection
	// finds it silent, treats it as a dead forward, and takes over.
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	s.KillSessions(syscall.SIGCONT)
	t.Logf("fault: frozen guest detected after %v (keepalive 500ms + 1s); forward up again after %v",
		detected.Round(time.Millisecond), time.Since(frozen).Round(time.Millisecond))
}

func TestExposeTwoGuests(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s1 := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "vm1"})
	s2 := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "vm2"})
	e := expose(t, p, []forward.Guest{guestOf(t, s1, ""), guestOf(t, s2, "")}, nil)
	socks := map[string]string{}
	for range 2 {
		ev := e.wait(t, forward.StateUp)
		socks[ev.Guest] = ev.Socket
	}
	mustHello(t, s1, socks["vm1"])
	mustHello(t, s2, socks["vm2"])

	// One guest going away does not touch the other.
	s1.Kill(syscall.SIGKILL)
	s1.KillSessions(syscall.SIGKILL)
	e.wait(t, forward.StateBackoff)
	mustHello(t, s2, socks["vm2"])
}

// With the host pcscd gone, guest clients fail at once with "Service not
// available"; when it comes back, they work again without a reconnect.
func TestExposeHostPCSCDStopped(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	p.Stop()
	_, err := guestClient(t, s, up.Socket, "hello")
	if err == nil || !strings.Contains(err.Error(), "0x8010001D") {
		t.Errorf("hello with pcscd stopped: %v, want SCARD_E_NO_SERVICE (0x8010001D)", err)
	}
	// The guest gets its refusal before the host logs why.
	if !e.logged("connect to host pcscd") {
		t.Errorf("no host log line about the missing pcscd:\n%s", e.log)
	}
	p.Restart(t)
	p.InsertCard(t)
	mustHello(t, s, up.Socket)
}

// --guest-socket in a directory that other users can write to is refused:
// one of them could create the path first and read the PIN.
func TestExposeRefusesSharedDirectory(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	shared := filepath.Join(s.Dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o1777)
	e := expose(t, p, []forward.Guest{guestOf(t, s, filepath.Join(shared, "pcscd.comm"))}, nil)
	ev := e.wait(t, forward.StateFailed)
	if !errors.Is(ev.Err, guestsock.ErrUnsafeDir) {
		t.Fatalf("err = %v, want ErrUnsafeDir", ev.Err)
	}
}

// Through the SSH channel, large messages (an extended APDU is up to 64 KiB)
// pass unchanged and a half-close reaches the daemon, which still answers.
// A malformed first message closes only its own connection.
func TestExposeLargeMessagesAndHalfClose(t *testing.T) {
	t.Parallel()
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := exposeSocket(t, fake.Socket, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)

	bad, err := net.Dial("unix", up.Socket)
	if err != nil {
		t.Fatal(err)
	}
	bad.Write([]byte{0xff, 0xff, 0xff, 0x7f, 0x09, 0, 0, 0})
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("malformed opening: read %d, %v; want the connection closed", n, err)
	}
	bad.Close()

	c, err := net.Dial("unix", up.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write(pcsc.AppendVersionRequest(nil, pcsc.V44))
	var rbuf [12]byte
	if r, err := pcsc.ReadVersionReply(c, &rbuf); err != nil || !r.Accepted() {
		t.Fatalf("version: %+v %v", r, err)
	}
	msg := make([]byte, 8+32+65548)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	go func() {
		c.Write(msg)
		c.(*net.UnixConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the forward: %d of %d bytes, equal=%v, err %v", len(got), len(msg), bytes.Equal(got, msg), err)
	}
	if !e.logged("closing guest connection") {
		t.Errorf("no log line for the malformed connection:\n%s", e.log)
	}
}

// At debug level, a full hello-world exchange and a short transmit loop leave
// none of the card's bytes in the log: not the AID, not the SELECT, not the
// answer, in any encoding; neither through the byte relay nor through the
// protocol-aware stage with its audit log of every PC/SC call.
func TestExposeLogsNoCardData(t *testing.T) {
	t.Parallel()
	for _, audit := range []bool{false, true} {
		t.Run(fmt.Sprintf("audit=%v", audit), func(t *testing.T) {
			t.Parallel()
			p := testenv.StartPCSCD(t)
			p.InsertCard(t)
			s := testenv.StartSSHD(t, testenv.SSHDOptions{})
			e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, func(c *forward.Config) { c.Relay.Audit = audit })
			up := e.wait(t, forward.StateUp)
			mustHello(t, s, up.Socket)
			if out, err := guestClient(t, s, up.Socket, "bench", "20"); err != nil {
				t.Fatalf("bench: %v: %s", err, out)
			}
			if err := e.stop(t); err != nil {
				t.Fatal(err)
			}
			log := e.log.String()
			if !strings.Contains(log, "level=DEBUG") || !strings.Contains(log, "guest connection closed") {
				t.Fatalf("the log has no debug events for the connections:\n%s", log)
			}
			if audit && !strings.Contains(log, "SCARD_TRANSMIT") {
				t.Fatalf("the audit log has no SCARD_TRANSMIT line:\n%s", log)
			}
			if found := testenv.CardDataIn(log); len(found) > 0 {
				t.Errorf("card data in the debug log: %q\n%s", found, log)
			}
		})
	}
}
