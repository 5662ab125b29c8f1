package connlimit_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/testenv"
)

func TestAcquire(t *testing.T) {
	var log bytes.Buffer
	l, err := connlimit.New(&connlimit.Config{PerGuest: 2, Total: 3, Logger: logtest.New(t, &log, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	a1, ok1 := l.Acquire("a")
	_, ok2 := l.Acquire("a")
	_, ok3 := l.Acquire("a")
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("guest a: %v %v %v, want the third refused", ok1, ok2, ok3)
	}
	if _, ok := l.Acquire("b"); !ok {
		t.Fatal("guest b refused while a is at its own cap")
	}
	if _, ok := l.Acquire("c"); ok {
		t.Fatal("guest c accepted over the total cap")
	}
	if _, ok := l.AcquireCancel("a"); ok {
		t.Fatal("a cancel socket went over the total cap")
	}
	a1()
	a1() // idempotent
	if n, total := l.Open("a"); n != 1 || total != 2 {
		t.Fatalf("after a release: a %d, total %d", n, total)
	}
	if _, ok := l.Acquire("c"); !ok {
		t.Fatal("guest c refused after a release")
	}
	l2, _ := connlimit.New(&connlimit.Config{PerGuest: 1, Total: 10})
	l2.Acquire("a")
	if _, ok := l2.AcquireCancel("a"); !ok {
		t.Fatal("a guest at its cap cannot cancel")
	}
	// Four refusals in a burst, one log line.
	if got := strings.Count(log.String(), "refusing guest connections"); got != 1 {
		t.Errorf("%d log lines for one burst:\n%s", got, &log)
	}
	for _, c := range []connlimit.Config{{PerGuest: -1}, {PerGuest: 10, Total: 5}} {
		if _, err := connlimit.New(&c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestFloodPCSCD: one guest opens 250 connections with a context each
// through a server capped by a Limiter with the defaults, against the real
// pcscd. It gets 32; the rest are refused at once with
// SCARD_E_NO_SERVICE; a second guest and a client on the host's own socket
// still get contexts. Without the cap, the flood takes pcscd's 200 client
// slots and the host's client fails (issue 13, item 4).
func TestFloodPCSCD(t *testing.T) {
	p := testenv.StartPCSCD(t)
	l, err := connlimit.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	guestA := serveGuest(t, l, "a", p.Socket)
	guestB := serveGuest(t, l, "b", p.Socket)

	var ok, refused int
	start := time.Now()
	for range 250 {
		c, rv := pcsctest.Open(t, guestA)
		switch rv {
		case pcsc.ReturnSuccess:
			ok++
			t.Cleanup(func() { c.Close() })
		case pcsc.ReturnNoService:
			refused++
		default:
			t.Fatalf("flood: rv %#x", rv)
		}
	}
	if ok != connlimit.DefaultPerGuest || refused != 250-ok {
		t.Fatalf("flood: %d served, %d refused; want %d served", ok, refused, connlimit.DefaultPerGuest)
	}
	t.Logf("250 connections in %v: %d served, %d refused", time.Since(start).Round(time.Millisecond), ok, refused)
	for range 5 {
		c, rv := pcsctest.Open(t, guestB)
		if rv != pcsc.ReturnSuccess {
			t.Fatalf("second guest: rv %#x", rv)
		}
		c.Close()
	}
	c, rv := pcsctest.Open(t, p.Socket)
	if rv != pcsc.ReturnSuccess {
		t.Fatalf("host client on pcscd's socket: rv %#x", rv)
	}
	c.Close()
}

// serveGuest serves a socket for guest as the core Serve would with the
// cap: over it, Refuse; under it, the bytes both ways to pcscd.
func serveGuest(t *testing.T, l *connlimit.Limiter, guest, pcscd string) string {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "guest.comm")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			release, ok := l.Acquire(guest)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !ok {
					l.Refuse(c)
					return
				}
				defer release()
				defer c.Close()
				h, err := net.Dial("unix", pcscd)
				if err != nil {
					return
				}
				defer h.Close()
				go func() {
					io.Copy(h, c)
					h.Close()
				}()
				io.Copy(c, h)
			}()
		}
	}()
	return path
}
