//go:build unix

package forward_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// Fault injection with real processes: pcscd with the test card, the guest's
// sshd, and the real libpcsclite in the guest. Each test ends the same way:
// the client got an error or completed (never a hang), the forward is up, a
// new client gets "Hello world!", and the process has no more goroutines or
// file descriptors than before the fault.
//
// These tests do not run in parallel, so that the goroutine and descriptor
// counts are this test's alone. Each logs a "fault:" line with what the
// client saw and how long recovery took (go test -v -run Fault ./forward).

// bgClient is the C client running as the guest user in the background.
type bgClient struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	stdout logtest.Buffer
	stderr logtest.Buffer
	done   chan struct{}
	err    error
	ended  time.Time
}

func startGuestClient(t *testing.T, s *testenv.SSHD, socket string, args ...string) *bgClient {
	t.Helper()
	c := &bgClient{done: make(chan struct{}), lines: make(chan string, 100)}
	c.cmd = exec.Command(clientBin(t, s), args...)
	c.cmd.Dir = s.Home
	c.cmd.Env = []string{"HOME=" + s.Home, "PATH=/usr/bin:/bin", "PCSCLITE_CSOCK_NAME=" + socket}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID)}}
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Drain stdout before Wait, which closes the pipe.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.stdout.Write([]byte(sc.Text() + "\n"))
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
		c.err = c.cmd.Wait()
		c.ended = time.Now()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitEnd waits for the client to exit and fails the test if it has not
// within limit: it hung.
func (c *bgClient) waitEnd(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("the client hung: still running %v after the fault", limit)
	}
}

// saw says what the client reported: its PC/SC error, or its output.
func (c *bgClient) saw() string {
	if c.err != nil {
		return pcscError(c.stderr.String())
	}
	return "completed: " + strings.TrimSpace(c.stdout.String())
}

// pcscError is the client's last message, "FUNCTION: TEXT (0xCODE)", from
// its stderr or from an error that quotes it.
func pcscError(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "pcscclient: "); i >= 0 {
		s = s[i+len("pcscclient: "):]
	}
	return s
}

// waitLine returns the client's next line of output.
func (c *bgClient) waitLine(t *testing.T) string {
	t.Helper()
	select {
	case l := <-c.lines:
		return l
	case <-c.done:
		t.Fatalf("the client exited: %v: %s", c.err, &c.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("the client printed nothing within 30 s")
	}
	return ""
}

// opened counts the relayed guest connections in the log so far.
func (e *exposed) opened() int { return strings.Count(e.log.String(), "guest connection opened") }

// waitOpened waits until the log shows n relayed guest connections.
func (e *exposed) waitOpened(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.opened() < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d guest connections opened:\n%s", n, e.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The guest's sshd serving the forward is killed (SIGKILL) while a client is
// in a loop of SCardTransmit. The listening sshd stays, as when one
// connection's process dies: the forward comes back on its own.
func TestFaultSSHDKilledMidTransmit(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	before := testenv.Snapshot(t)

	n := e.opened()
	c := startGuestClient(t, s, up.Socket, "bench", "10000000")
	e.waitOpened(t, n+1)
	time.Sleep(300 * time.Millisecond) // into the transmit loop
	killed := time.Now()
	if s.KillSessions(syscall.SIGKILL) == 0 {
		t.Fatal("no sshd session to kill")
	}
	c.waitEnd(t, 30*time.Second)
	if c.err == nil {
		t.Errorf("the client completed ten million APDUs in %v", c.ended.Sub(killed))
	}
	e.wait(t, forward.StateBackoff)
	up = e.wait(t, forward.StateUp)
	back := time.Since(killed)
	mustHello(t, s, up.Socket)
	testenv.CheckNoLeak(t, before)
	t.Logf("fault: client saw %q after %v; forward up again after %v", c.saw(),
		c.ended.Sub(killed).Round(time.Millisecond), back.Round(time.Millisecond))
}

// The guest socket is deleted by hand, then its whole directory: the socket
// check notices and the forward creates both again.
func TestFaultGuestSocketDeleted(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	const check = 200 * time.Millisecond
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, func(c *forward.Config) { c.SocketCheck = check })
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	before := testenv.Snapshot(t)

	for _, victim := range []string{up.Socket, filepath.Dir(up.Socket)} {
		removed := time.Now()
		if err := os.RemoveAll(victim); err != nil {
			t.Fatal(err)
		}
		// Until the check runs, the guest's clients find no pcscd.
		_, err := guestClient(t, s, up.Socket, "hello")
		saw := "Hello world!"
		if err != nil {
			saw = pcscError(err.Error())
			if !strings.Contains(saw, "0x8010001D") {
				t.Errorf("hello without the socket: %v, want SCARD_E_NO_SERVICE (0x8010001D)", err)
			}
		}
		ev := e.wait(t, forward.StateBackoff)
		if !errors.Is(ev.Err, guestsock.ErrRemoved) {
			t.Errorf("forward went down with %v, want ErrSocketRemoved", ev.Err)
		}
		up = e.wait(t, forward.StateUp)
		back := time.Since(removed)
		checkOwnerOnly(t, s, up.Socket)
		mustHello(t, s, up.Socket)
		t.Logf("fault: %s removed: client saw %q; forward up again after %v (check every %v)",
			filepath.Base(victim), saw, back.Round(time.Millisecond), check)
	}
	testenv.CheckNoLeak(t, before)
}

// The host pcscd restarts while clients of two guests wait in
// SCardGetStatusChange. The clients get an error; the forwards stay up and
// relay to the new pcscd.
func TestFaultHostPCSCDRestartMidWait(t *testing.T) {
	p := testenv.StartPCSCD(t)
	card := p.InsertCard(t)
	s1 := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "vm1"})
	s2 := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "vm2"})
	e := expose(t, p, []forward.Guest{guestOf(t, s1, ""), guestOf(t, s2, "")}, nil)
	guests := map[string]*testenv.SSHD{"vm1": s1, "vm2": s2}
	socks := map[string]string{}
	for range 2 {
		ev := e.wait(t, forward.StateUp)
		socks[ev.Guest] = ev.Socket
	}
	for name, s := range guests {
		mustHello(t, s, socks[name])
	}
	before := testenv.Snapshot(t)

	var clients []*bgClient
	for name, s := range guests {
		c := startGuestClient(t, s, socks[name], "wait", "60")
		if line := c.waitLine(t); !strings.HasPrefix(line, "waiting: ") {
			t.Fatalf("%s: client did not start waiting: %q", name, line)
		}
		clients = append(clients, c)
	}
	restarted := time.Now()
	p.Restart(t)
	for _, c := range clients {
		c.waitEnd(t, 30*time.Second)
		if c.err == nil {
			t.Errorf("a waiting client succeeded across the pcscd restart: %s", c.saw())
		}
	}
	// The harness keeps the old card's connection to the dead vpcd open;
	// close it, so that the count below is cardshare's alone.
	card.Close()
	p.InsertCard(t)
	for name, s := range guests {
		mustHello(t, s, socks[name])
	}
	back := time.Since(restarted)
drain:
	for {
		select {
		case ev := <-e.events:
			if ev.State != forward.StateUp {
				t.Errorf("%s went %s: a pcscd restart must not touch the SSH side", ev.Guest, ev.State)
			}
		default:
			break drain
		}
	}
	testenv.CheckNoLeak(t, before)
	t.Logf("fault: client saw %q after %v; hello again after %v (pcscd restart and card insertion included)",
		clients[0].saw(), clients[0].ended.Sub(restarted).Round(time.Millisecond), back.Round(time.Millisecond))
}

// Clients that connect and send nothing are dropped after OpeningTimeout and
// do not hold up the others.
func TestFaultSilentClient(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	const timeout = time.Second
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, func(c *forward.Config) { c.Relay.OpeningTimeout = timeout })
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	before := testenv.Snapshot(t)

	connected := time.Now()
	var silent []net.Conn
	for range 5 {
		c, err := net.Dial("unix", up.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	mustHello(t, s, up.Socket)
	if d := time.Since(connected); d >= timeout {
		t.Errorf("hello took %v with silent clients connected; it waited for them", d)
	}
	var dropped time.Duration
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("silent client: read %d, %v; want EOF", n, err)
		}
		dropped = time.Since(connected)
		c.Close()
	}
	if dropped < timeout {
		t.Errorf("silent clients dropped after %v, before OpeningTimeout %v", dropped, timeout)
	}
	// The relay logs once the read it was blocked in returns.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(e.log.String(), "closing guest connection") < len(silent); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for each silent client:\n%s", e.log)
		}
	}
	mustHello(t, s, up.Socket)
	testenv.CheckNoLeak(t, before)
	t.Logf("fault: 5 silent clients saw EOF after %v (OpeningTimeout %v); a hello meanwhile worked",
		dropped.Round(time.Millisecond), timeout)
}

// After a good handshake, a client sends a length that no message may have:
// pcscd closes that connection, and only that one.
func TestFaultHugeLength(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)
	before := testenv.Snapshot(t)

	n := e.opened()
	busy := startGuestClient(t, s, up.Socket, "bench", "3000")
	e.waitOpened(t, n+1)

	for _, tc := range []struct {
		name string
		send func(c net.Conn) []byte
	}{
		// pcsc-lite's winscard_svc.c: a header size that is not the
		// command's struct size is "Wrong length".
		{"header size 0xFFFFFFF0", func(net.Conn) []byte {
			return le32(0xFFFFFFF0, pcscEstablishContext)
		}},
		// A TRANSMIT on a card handle of its own, whose APDU length
		// exceeds MAX_BUFFER_SIZE_EXTENDED: "Buffer overflow detected".
		{"SCardTransmit length 0xFFFFFF00", func(c net.Conn) []byte {
			card := connectCard(t, c)
			return append(le32(32, pcscTransmit), le32(card, 2, 16, 0xFFFFFF00, 2, 16, 258, 0)...)
		}},
	} {
		c := openRaw(t, up.Socket)
		msg := tc.send(c)
		sent := time.Now()
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := c.Read(make([]byte, 64))
		if k != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: read %d bytes, %v; want the connection closed", tc.name, k, err)
		}
		c.Close()
		t.Logf("fault: %s: the client saw %v after %v", tc.name, err, time.Since(sent).Round(time.Millisecond))
	}

	busy.waitEnd(t, 60*time.Second)
	if busy.err != nil {
		t.Fatalf("a client of another connection failed: %s", busy.saw())
	}
	if !strings.Contains(busy.saw(), "count=3000") {
		t.Errorf("the other client: %s", busy.saw())
	}
	mustHello(t, s, up.Socket)
	testenv.CheckNoLeak(t, before)
}

// Command codes of pcsc-lite's winscard_msg.h (enum pcsc_msg_commands); the
// messages below follow its establish_struct, connect_struct and
// transmit_struct, little-endian, after the 8-byte header (size, command).
const (
	pcscEstablishContext = 0x01
	pcscConnect          = 0x04
	pcscTransmit         = 0x09
)

func le32(v ...uint32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

// openRaw connects to the guest socket and exchanges CMD_VERSION, as
// libpcsclite does first.
func openRaw(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(pcsc.AppendVersionRequest(nil, pcsc.V44))
	var rbuf [12]byte
	if r, err := pcsc.ReadVersionReply(c, &rbuf); err != nil || !r.Accepted() {
		t.Fatalf("version: %+v %v", r, err)
	}
	return c
}

// connectCard establishes a context and connects to the card in
// testenv.VPCDReader on c, and returns the card handle.
func connectCard(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	c.Write(append(le32(12, pcscEstablishContext), le32(2, 0, 0)...)) // establish_struct, SCARD_SCOPE_SYSTEM
	var est [12]byte
	if _, err := io.ReadFull(c, est[:]); err != nil || binary.LittleEndian.Uint32(est[8:]) != 0 {
		t.Fatalf("establish context: % x, %v", est, err)
	}
	ctx := binary.LittleEndian.Uint32(est[4:])
	var reader [128]byte
	copy(reader[:], testenv.VPCDReader)
	req := append(le32(152, pcscConnect), le32(ctx)...) // connect_struct
	req = append(req, reader[:]...)
	req = append(req, le32(2, 3, 0, 0, 0)...) // SHARED, T0|T1
	c.Write(req)
	var rep [152]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || binary.LittleEndian.Uint32(rep[148:]) != 0 {
		t.Fatalf("connect: rv %#x, %v", binary.LittleEndian.Uint32(rep[148:]), err)
	}
	return binary.LittleEndian.Uint32(rep[140:])
}
