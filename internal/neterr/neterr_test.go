package neterr

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// checks are the functions and the numbers each must take, on the system
// the test runs on.
var checks = []struct {
	name   string
	is     func(error) bool
	errnos []syscall.Errno
}{
	{"Refused", Refused, refused},
	{"HostUnreachable", HostUnreachable, hostUnreachable},
	{"NetUnreachable", NetUnreachable, netUnreachable},
	{"Reset", Reset, reset},
	{"NoUnixSockets", NoUnixSockets, noUnixSockets},
}

// Each function takes its own numbers, wrapped as the net package wraps
// them, and none of the others' nor an error that is no number at all.
func TestNumbers(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	for _, c := range checks {
		for _, o := range checks {
			for _, e := range o.errnos {
				if got := c.is(wrap(e)); got != (c.name == o.name) {
					t.Errorf("%s(%v) = %v", c.name, wrap(e), got)
				}
			}
		}
		for _, err := range []error{nil, io.EOF, os.ErrNotExist, net.ErrClosed, fmt.Errorf("refused")} {
			if c.is(err) {
				t.Errorf("%s(%v) = true", c.name, err)
			}
		}
	}
}

// A TCP port that nothing listens on refuses, on this system's own stack
// (scripts/wine-host.sh runs this test's windows/amd64 build under Wine).
func TestRefusedHere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		c.Close()
		t.Skipf("%s was taken again before the dial", addr)
	}
	t.Logf("dial a closed port: %v", err)
	if !Refused(err) || Reset(err) {
		t.Fatalf("dial a closed port: %v; Refused %v, Reset %v", err, Refused(err), Reset(err))
	}
}

// A Unix socket file left behind with nothing serving it refuses too;
// where there is no AF_UNIX, listening says so.
func TestRefusedUnixHere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if NoUnixSockets(err) {
		t.Skipf("no AF_UNIX here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		t.Fatal("a left-over socket file answered")
	}
	if !Refused(err) {
		t.Fatalf("dial a left-over socket file: %v; Refused false", err)
	}
}

// A peer that closes with unread data resets the connection: the read
// that sees it, and a write after it, fail with Reset.
func TestResetHere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			var b [1]byte
			_, err = c.Read(b[:])         // the client's first byte
			c.(*net.TCPConn).SetLinger(0) // close with RST
			c.Close()
		}
		closed <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ab")); err != nil { // one byte stays unread
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, rerr := c.Read(make([]byte, 1))
	if !Reset(rerr) {
		t.Fatalf("read after the peer reset: %v; Reset false", rerr)
	}
	_, werr := c.Write([]byte("c"))
	t.Logf("read: %v; write: %v", rerr, werr)
	if !Reset(werr) {
		t.Fatalf("write after the peer reset: %v; Reset false", werr)
	}
	if Refused(rerr) {
		t.Fatalf("Refused(%v)", rerr)
	}
}
