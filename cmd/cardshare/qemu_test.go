package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/vscard"
)

// notQEMUMain is the testscript command `notqemu SOCKET`: a chardev peer
// that is not QEMU. It listens on SOCKET, answers the first connection with
// an HTTP request instead of a VSCard Init, and waits for it to close; the
// bridge may have sent its own Init, and nothing else (a message of another
// type fails).
func notQEMUMain() int {
	ln, err := net.Listen("unix", os.Args[1])
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	conn, err := ln.Accept()
	if err != nil {
		return 1
	}
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := vscard.NewReader(conn)
	for {
		m, err := r.Next()
		if err != nil {
			return 0
		}
		if m.Type != vscard.Init {
			os.Stderr.WriteString("the bridge sent " + m.Type.String() + " to a non-QEMU chardev\n")
			return 1
		}
	}
}

// qemuPeer is a fake QEMU listening on a chardev socket (server=on), as
// ccid-card-passthru speaks VSCard.
type qemuPeer struct {
	t    *testing.T
	conn net.Conn
	r    *vscard.Reader
}

func (q *qemuPeer) expect(typ vscard.Type) []byte {
	q.t.Helper()
	q.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := q.r.Next()
		if err != nil {
			q.t.Fatalf("waiting for %v: %v", typ, err)
		}
		if m.Type == typ {
			return bytes.Clone(m.Payload)
		}
		if m.Type != vscard.Init {
			q.t.Fatalf("got %v, want %v", m.Type, typ)
		}
	}
}

func (q *qemuPeer) transmit(apdu []byte) []byte {
	q.t.Helper()
	if _, err := q.conn.Write(vscard.AppendMessage(nil, vscard.APDU, 0, apdu)); err != nil {
		q.t.Fatal(err)
	}
	return q.expect(vscard.APDU)
}

// TestCLIQEMUAttach runs `cardshare qemu attach` as a process over the real
// pcscd, vpcd and the test card, with a fake QEMU on the chardev: the guest
// gets the reader, the ATR and "Hello world!"; status shows the emulated
// reader; SIGHUP is ignored; SIGINT stops it cleanly.
func TestCLIQEMUAttach(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock, ctl := filepath.Join(dir, "ccid.sock"), filepath.Join(dir, "ctl", "q.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	bin, err := exec.LookPath("cardshare")
	if err != nil {
		t.Fatalf("cardshare command of TestMain: %v", err)
	}
	cmd := exec.Command(bin, "qemu", "attach", "--chardev", "unix:"+sock, "--reader", "Virtual PCD*", "--control-socket", ctl)
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+p.Socket)
	var stdout, stderr logtest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed once waited for, with waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
		}
	})

	ln.(*net.UnixListener).SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := &qemuPeer{t: t, conn: conn, r: vscard.NewReader(conn)}
	conn.Write(vscard.AppendMessage(nil, vscard.Init, 0, vscard.NewInit().Append(nil)))
	if name := q.expect(vscard.ReaderAdd); string(name) != testenv.VPCDReader {
		t.Fatalf("ReaderAdd %q", name)
	}
	q.expect(vscard.ATR)
	q.transmit([]byte{0x00, 0xa4, 0x04, 0x00, 0x0a, 0xa0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0c, 0x06, 0x01})
	if got := q.transmit([]byte{0, 0, 0, 0}); !bytes.Equal(got, append([]byte("Hello world!"), 0x90, 0)) {
		t.Fatalf("hello: % x", got)
	}

	s := waitStatus(t, ctl, "the emulated reader", func(s *statusDoc) bool {
		g := s.guest("ccid")
		return s.Mode == control.ModeQEMUCCID && g != nil && g.State == "up" && len(g.Chardevs) == 1 && g.Chardevs[0].Card && g.Chardevs[0].APDUs == 2
	})
	if g := s.guest("ccid"); g.Kind != control.KindQEMUCCID || g.Chardevs[0].Reader != testenv.VPCDReader || g.Readers[0] != "Virtual PCD*" {
		t.Errorf("status: %+v", g)
	}
	code, text, _ := cli(t, "", "status", "--control-socket", ctl)
	if code != 0 || !strings.Contains(text, "QEMU CCID GUEST") || !strings.Contains(text, testenv.VPCDReader) {
		t.Errorf("status text (%d):\n%s", code, text)
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := q.transmit([]byte{0, 0, 0, 0}); !bytes.Equal(got, append([]byte("Hello world!"), 0x90, 0)) {
		t.Fatalf("hello after SIGHUP: % x", got)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("after SIGINT: %v", waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGINT")
	}
	if _, err := os.Lstat(ctl); err == nil {
		t.Error("control socket left behind")
	}
	for _, want := range []string{"SIGHUP ignored", "msg=stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
}

// TestCLIUpCCIDGuest runs `cardshare up` with a ccid: guest over the real
// pcscd and the test card: up runs the bridge, the fake QEMU gets "Hello
// world!", and status --json shows the guest with kind qemu-ccid.
func TestCLIUpCCIDGuest(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	t.Setenv("PCSCLITE_CSOCK_NAME", p.Socket) // for up's libpcsclite
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock, ctl, file := filepath.Join(dir, "ccid.sock"), filepath.Join(dir, "ctl", "control.sock"), filepath.Join(dir, "config.yaml")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writeFile(t, file, "guests:\n  - name: q\n    ccid: {reader: \"Virtual PCD*\", chardev: \"unix:"+sock+"\"}\n")
	up := startUp(t, "--config", file, "--control-socket", ctl)

	ln.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := &qemuPeer{t: t, conn: conn, r: vscard.NewReader(conn)}
	conn.Write(vscard.AppendMessage(nil, vscard.Init, 0, vscard.NewInit().Append(nil)))
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit([]byte{0x00, 0xa4, 0x04, 0x00, 0x0a, 0xa0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0c, 0x06, 0x01})
	if got := q.transmit([]byte{0, 0, 0, 0}); !bytes.Equal(got, append([]byte("Hello world!"), 0x90, 0)) {
		t.Fatalf("hello: % x", got)
	}
	waitStatus(t, ctl, "the ccid guest up", func(s *statusDoc) bool {
		g := s.guest("q")
		return s.Mode == control.ModeUp && g != nil && g.Kind == control.KindQEMUCCID && g.State == "up" &&
			len(g.Chardevs) == 1 && g.Chardevs[0].Card && g.Chardevs[0].Reader == testenv.VPCDReader
	})
	up.signal(t, syscall.SIGTERM)
	<-up.done
	if up.err != nil {
		t.Fatalf("up after SIGTERM: %v", up.err)
	}
}
