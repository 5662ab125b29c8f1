package guestsock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
)

// TestRunOutputCapped: a guest whose shell prints without end stops the
// script with ErrOutputTooLarge instead of growing the host process until
// the caller's deadline (issue 13, item 5); the connection still serves the
// next script.
func TestRunOutputCapped(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := Run(ctx, c, "while :; do echo cardshare cardshare cardshare; done\n")
	if !errors.Is(err, ErrOutputTooLarge) || out != nil {
		t.Fatalf("endless output: %d bytes, %v; want ErrOutputTooLarge", len(out), err)
	}
	t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
	out, err = Run(ctx, c, "printf '%s\\n' \"$x\"\n", "x", "still there")
	if err != nil || string(out) != "still there\n" {
		t.Fatalf("next script: %q, %v", out, err)
	}
}

// TestPrepareOddPath: the guest scripts print paths with printf '%s\n'; the
// echo of dash (Debian's /bin/sh) turned the "\t" of a directory name
// into a tab, so Prepare reported another path than the one it prepared
// (issue 13, item 11).
func TestPrepareOddPath(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	want := s.Home + `/odd\tdir\c/-n/pcscd.comm`
	g, err := Prepare(context.Background(), c, want)
	if err != nil || g.Socket != want {
		t.Fatalf("Prepare(%q) = %q, %v", want, g.Socket, err)
	}
}

// TestClearStaleSilent: a listener that accepts but does not answer within
// the probe's wait may be a live program; ClearStale leaves its socket
// alone (ErrInUse), where it used to remove it after 2 s of silence
// (issue 13, item 11). A socket nobody listens on is still removed.
func TestClearStaleSilent(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	sock := s.Home + "/silent.sock"
	ln, err := c.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, never answered
		}
	}()
	removed, err := ClearStale(ctx, c, sock, 500*time.Millisecond, false)
	if removed || !errors.Is(err, ErrSilent) {
		t.Fatalf("silent listener: removed %v, %v; want ErrSilent", removed, err)
	}
	if gone, err := Missing(ctx, c, sock); gone || err != nil {
		t.Fatalf("the silent listener's socket was removed (%v)", err)
	}
	g, err := Inspect(ctx, c, sock, 500*time.Millisecond)
	if err != nil || g.State != InUse {
		t.Errorf("Inspect of a silent listener: %+v, %v; want in use", g, err)
	}
	// The caller's own lost forward, silent: removed.
	if removed, err := ClearStale(ctx, c, sock, 500*time.Millisecond, true); !removed || err != nil {
		t.Errorf("own lost forward: removed %v, %v", removed, err)
	}
	ln.Close()
	makeStale(t, s.Home+"/dead/pcscd.comm", s.UID, s.GID)
	if removed, err := ClearStale(ctx, c, s.Home+"/dead/pcscd.comm", 500*time.Millisecond, false); !removed || err != nil {
		t.Errorf("stale socket: removed %v, %v", removed, err)
	}
}
