package guestsock

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
)

// The keeper does a forward's guest-side work in its one session and
// shell: it prepares the path (as Prepare does, the same answer), reads
// the OS and pcsc-lite release after the listen, and removes the socket,
// on an sshd that allows one session per connection. The guest's shell may
// print noise of its own (start-up files); it is skipped. A script that
// exits ends only its subshell.
func TestKeeperOneSession(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"MaxSessions 1"}})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := StartKeeper(c)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := k.script(ctx, "printf 'noise\\n'; exit 3\n"); err != nil {
		t.Fatalf("a script that exits: %v", err)
	}
	want := s.Home + "/kept/pcscd.comm"
	g, err := k.Prepare(ctx, want)
	if err != nil || g.Socket != want || g.Exists != "" || g.Release != "" {
		t.Fatalf("Prepare = %+v, %v", g, err)
	}
	ln, err := c.ListenUnix(want)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := k.Probe(ctx)
	if err != nil || p.OS == "" {
		t.Fatalf("Probe = %+v, %v", p, err)
	}
	if _, ok := p.Client(); !ok {
		t.Errorf("Probe: release %q is not one cardshare knows (libpcsclite1 is installed here)", p.Release)
	}
	if err := k.Remove(ctx, want); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(want); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Remove: %v", err)
	}
	if _, err := k.Probe(ctx); err == nil {
		t.Error("Probe after Remove: no error")
	}
}

// Endless output through the keeper stops at MaxOutput with
// ErrOutputTooLarge, as with Run.
func TestKeeperOutputCapped(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := StartKeeper(c)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := k.script(ctx, "while :; do echo cardshare cardshare cardshare; done\n"); !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("endless output: %v, want ErrOutputTooLarge", err)
	}
}

// A keeper whose shell dies says why, with what the shell printed on
// stderr.
func TestKeeperShellEnded(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := StartKeeper(c)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.in.Write([]byte("printf '%s\\n' 'cardshare test: gone' >&2; exit 1\n"))
	_, err = k.Prepare(ctx, s.Home+"/x/pcscd.comm")
	if err == nil || !strings.Contains(err.Error(), "keeper shell ended: cardshare test: gone") {
		t.Fatalf("Prepare on an ended shell: %v", err)
	}
}
