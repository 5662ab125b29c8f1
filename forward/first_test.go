//go:build unix

package forward_test

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

// First connections: a mistake that cannot fix itself ends the guest at
// once; a guest that refuses or does not answer is waited for, within
// Config.Wait, with a "waiting for" line that says why.

func TestPermanentAndReason(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		err       error
		permanent bool
		reason    string
	}{
		{sshdial.ErrNoSuchHost, true, "no such host"},
		{sshdial.ErrHostUnknown, true, "host key is not known"},
		{sshdial.ErrHostKeyChanged, true, "host key has changed"},
		{sshdial.ErrAuth, true, "authentication failed"},
		{guestsock.ErrForwardRefused, true, guestsock.ErrForwardRefused.Error()},
		{forward.ErrRelativeSocket, true, forward.ErrRelativeSocket.Error()},
		{refused, false, "connection refused"},
		{errors.Join(sshdial.ErrConnect, sshdial.ErrNoBanner, os.ErrDeadlineExceeded), false, "no SSH banner yet"},
		{errors.Join(sshdial.ErrConnect, os.ErrDeadlineExceeded), false, "timed out"},
		{errors.New("guest connection closed: EOF"), false, "guest connection closed: EOF"},
	} {
		if got := forward.Permanent(c.err); got != c.permanent {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.permanent)
		}
		if got := forward.Reason(c.err); got != c.reason {
			t.Errorf("Reason(%v) = %q, want %q", c.err, got, c.reason)
		}
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestFirstConnectionWaitsThenGivesUp(t *testing.T) {
	t.Parallel()
	d := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	g := forward.Guest{Name: "booting", Target: sshdial.Target{User: "u", HostName: "127.0.0.1", Port: closedPort(t)}}
	start := time.Now()
	e := exposeSocket(t, d.Socket, []forward.Guest{g}, func(c *forward.Config) {
		c.MinBackoff, c.MaxBackoff = time.Second, 30*time.Second
		c.ConnectBackoff = 100 * time.Millisecond
		c.Wait = 1500 * time.Millisecond
	})
	var err error
	select {
	case err = <-e.done:
		e.done <- err
	case <-time.After(time.Minute):
		t.Fatalf("Expose still running a minute after a 1.5 s Wait; log:\n%s", e.log)
	}
	if !errors.Is(err, forward.ErrNotUp) || !errors.Is(err, syscall.ECONNREFUSED) || !strings.HasPrefix(err.Error(), "booting: guest not up within 1.5s: ") {
		t.Fatalf("err = %v, want booting: ErrNotUp wrapping ECONNREFUSED", err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("gave up after %v, before Wait", d)
	}
	log := e.log.String()
	waits := regexp.MustCompile(`msg="waiting for booting \(connection refused\); retrying in \d+ms"`).FindAllString(log, -1)
	// MinBackoff alone would allow two attempts in 1.5 s; ConnectBackoff
	// makes them every 100 ms.
	if len(waits) < 4 {
		t.Errorf("%d waiting lines, want one per attempt every ≤100 ms; log:\n%s", len(waits), log)
	}
	if strings.Contains(log, "lost") {
		t.Errorf("a guest that never connected was reported lost:\n%s", log)
	}
}

func TestFirstConnectionPermanent(t *testing.T) {
	t.Parallel()
	d := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	for _, c := range []struct {
		guest forward.Guest
		want  error
	}{
		// What the resolver answers for a name that does not exist
		// (checked against a fake error in sshdial's tests).
		{forward.Guest{Name: "myvmm", Target: sshdial.Target{User: "u", HostName: "nosuchhost.invalid", Port: 22}}, sshdial.ErrNoSuchHost},
		{forward.Guest{Name: "rel", Target: sshdial.Target{User: "u", HostName: "127.0.0.1", Port: closedPort(t)}, Socket: "relative.comm"}, forward.ErrRelativeSocket},
	} {
		e := exposeSocket(t, d.Socket, []forward.Guest{c.guest}, nil) // no Wait: forever
		select {
		case err := <-e.done:
			e.done <- err
			if !errors.Is(err, c.want) {
				t.Errorf("%s: err = %v, want %v", c.guest.Name, err, c.want)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: still retrying after 30 s; log:\n%s", c.guest.Name, e.log)
		}
	}
}

// A guest behind a VM manager's NAT port forward (VirtualBox, QEMU user
// networking) that is still booting: the port accepts and says nothing.
// Attempts give up at the banner timeout instead of the whole connect
// timeout, and are retried every ConnectBackoff, so the forward is up within
// a few seconds of the guest's sshd (issue 17 item 9a). The time is logged,
// not asserted: the machine may be loaded.
func TestBootingGuestBehindNAT(t *testing.T) {
	t.Parallel()
	d := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	g := guestOf(t, s, "")
	sshdAddr := net.JoinHostPort(g.Target.HostName, strconv.Itoa(g.Target.Port))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// The guest's key, known under the NAT's port as well.
	nat := ln.Addr().(*net.TCPAddr).Port
	known, err := os.ReadFile(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	moved := strings.ReplaceAll(string(known), knownHostsName(g.Target.HostName, g.Target.Port), knownHostsName(g.Target.HostName, nat))
	if err := os.WriteFile(kh, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Target.Port, g.Target.KnownHostsFiles = nat, []string{kh}
	var booted atomic.Int64 // unix nanos when sshd "came up"; 0 while booting
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if booted.Load() == 0 {
				// The NAT accepts; the booting guest never answers.
				t.Cleanup(func() { c.Close() })
				continue
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", sshdAddr)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	e := exposeSocket(t, d.Socket, []forward.Guest{g}, func(c *forward.Config) {
		c.MinBackoff, c.MaxBackoff = time.Second, 30*time.Second
		c.Dial.BannerTimeout = 500 * time.Millisecond
	})
	time.Sleep(5 * time.Second) // several attempts against the silent NAT
	if strings.Contains(e.log.String(), "forward up") {
		t.Fatal("forward up before the guest's sshd")
	}
	booted.Store(time.Now().UnixNano())
	e.wait(t, forward.StateUp)
	after := time.Since(time.Unix(0, booted.Load()))
	if !strings.Contains(e.log.String(), "no SSH banner yet") {
		t.Errorf("no attempt gave up for want of a banner:\n%s", e.log)
	}
	t.Logf("forward up %v after the guest's sshd (banner timeout 500ms, ConnectBackoff 2s, MaxBackoff 30s)", after.Round(10*time.Millisecond))
}

// knownHostsName is how known_hosts names host:port.
func knownHostsName(host string, port int) string {
	if port == 22 {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}
