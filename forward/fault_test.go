//go:build unix

package forward_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// Another user of the guest cannot reach the forwarded socket: the real
// libpcsclite, run as a second unprivileged user, gets no service.
func TestExposeOtherGuestUserLockedOut(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	other := testenv.StartSSHD(t, testenv.SSHDOptions{HostAlias: "other"}) // only for its user
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	mustHello(t, s, up.Socket)

	bin := filepath.Join(s.Dir, "pcscclient") // copied there by mustHello
	out, err := runAs(t, other.UID, other.GID, other.Home, up.Socket, bin, "hello")
	if err == nil || strings.Contains(out, "Hello world!") {
		t.Fatalf("another guest user reached the card: %q, %v", out, err)
	}
	if !strings.Contains(err.Error(), "0x8010001D") && !strings.Contains(err.Error(), "0x80100013") {
		t.Errorf("intruder error %v, want no service (0x8010001D) or comm error (0x80100013)", err)
	}
}

// Many clients at once on one guest socket, each with its own connection,
// all relayed; then a client that vanishes mid-message. Nothing leaks.
func TestExposeManyClients(t *testing.T) {
	t.Parallel()
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	const clients = 200
	// The relay under load, not the per-guest cap (TestServeFloodCapped).
	l, err := connlimit.New(&connlimit.Config{PerGuest: clients, Total: clients})
	if err != nil {
		t.Fatal(err)
	}
	e := exposeSocket(t, fake.Socket, []forward.Guest{guestOf(t, s, "")}, func(c *forward.Config) { c.Relay.Limiter = l })
	up := e.wait(t, forward.StateUp)
	before := runtime.NumGoroutine()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(up.Socket, fmt.Sprintf("client %d", i))
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed < 3 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, clients)
	}
	t.Logf("fault: %d clients at once, each its own connection: all echoed in %v", clients, time.Since(start).Round(time.Millisecond))

	// A client that disconnects in the middle of a message.
	c, err := net.Dial("unix", up.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(pcsc.AppendVersionRequest(nil, pcsc.V44)[:10])
	c.Close()

	vanished := time.Now()
	deadline := time.Now().Add(15 * time.Second)
	for fake.Conns() != 0 || runtime.NumGoroutine() > before+5 {
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %d daemon connections, %d goroutines (before %d)", fake.Conns(), runtime.NumGoroutine(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("fault: a client vanished mid-message: its daemon connection closed within %v", time.Since(vanished).Round(time.Millisecond))
}

func echoOnce(sock, msg string) error {
	// The guest sshd's listen backlog is finite: a burst of connects can
	// find it full (EAGAIN on a Unix socket). Retry as a client would.
	var c net.Conn
	var err error
	for try := 0; ; try++ {
		c, err = net.Dial("unix", sock)
		if !errors.Is(err, syscall.EAGAIN) || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(pcsc.AppendVersionRequest(nil, pcsc.V44)); err != nil {
		return err
	}
	var rbuf [12]byte
	if r, err := pcsc.ReadVersionReply(c, &rbuf); err != nil || !r.Accepted() {
		return fmt.Errorf("version: %+v %v", r, err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	if !bytes.Equal(got, []byte(msg)) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}
