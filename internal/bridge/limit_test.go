package bridge_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// TestServeFloodCapped: guest A opens 250 connections with a context each
// through bridge.Serve against the real pcscd, with one Limiter (the
// defaults) shared by two guests' Serves, as a cardshare process has. A
// gets 32 and the rest are refused at once with SCARD_E_NO_SERVICE;
// guest B and a program on the host's own pcscd socket still reach the
// card with the real libpcsclite, and the refusals are logged once.
// Without the Limiter, the flood takes pcscd's ~200 client slots and the
// host's program fails with "Service not available" (issue 13, item 4).
func TestServeFloodCapped(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	bin := testenv.BuildClient(t)
	log := new(logtest.Buffer)
	l, err := connlimit.New(&connlimit.Config{Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	serveGuest := func(name string) string {
		dir, err := os.MkdirTemp("", "cs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		socket := filepath.Join(dir, "guest.comm")
		ln, err := net.Listen("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cfg := &bridge.Config{Limiter: l, Guest: name, OpeningTimeout: 5 * time.Second}
		go func() { done <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: p.Socket}.Dial, cfg) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve %s: %v", name, err)
			}
		})
		return socket
	}
	guestA, guestB := serveGuest("a"), serveGuest("b")

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
	t.Logf("250 connections in %v: %d served, %d refused", time.Since(start).Round(time.Millisecond), ok, refused)
	if ok != connlimit.DefaultPerGuest {
		t.Fatalf("flood: %d served, %d refused; want %d served", ok, refused, connlimit.DefaultPerGuest)
	}
	for name, socket := range map[string]string{"second guest": guestB, "host program": p.Socket} {
		out, err := testenv.RunClient(t, bin, socket, "hello")
		if err != nil || !strings.Contains(out, "Hello world!") {
			t.Fatalf("%s during the flood: %v\n%s", name, err, out)
		}
	}
	if n := strings.Count(log.String(), "refusing guest connections"); n != 1 {
		t.Errorf("%d log lines for one burst of refusals:\n%s", n, log)
	}
}
