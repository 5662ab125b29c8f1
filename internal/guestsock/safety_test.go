//go:build unix

package guestsock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/testenv"
)

// A directory that others may write to, anywhere above the socket's own,
// lets them swap the socket's directory for theirs: it is refused unless
// it is sticky (as /tmp is).
func TestPrepareRefusesWritableAncestor(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	mk := func(mode os.FileMode, parts ...string) string {
		p := filepath.Join(append([]string{s.Dir}, parts...)...)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	open := mk(0o777, "open")
	mine := mk(0o700, "open", "mine")
	os.Chown(mine, s.UID, s.GID)
	_, err := Prepare(ctx, c, filepath.Join(mine, "pcscd.comm"))
	if !errors.Is(err, ErrUnsafeDir) || !strings.HasSuffix(err.Error(), ": "+open) {
		t.Errorf("under a 0777 grandparent: err = %v, want ErrUnsafeDir naming %s", err, open)
	}

	mk(os.ModeSticky|0o777, "sticky")
	mine = mk(0o700, "sticky", "mine")
	os.Chown(mine, s.UID, s.GID)
	if g, err := Prepare(ctx, c, filepath.Join(mine, "pcscd.comm")); err != nil {
		t.Errorf("under a sticky 1777 grandparent: %+v, %v", g, err)
	}
}

// Remove takes the default directory away with the socket when nothing
// else is in it, and never a directory the user chose.
func TestRemoveDefaultDir(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	g, err := Prepare(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(g.Socket)
	makeStale(t, g.Socket, s.UID, s.GID)
	if err := Remove(ctx, c, g.Socket); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("default directory %s after Remove: %v, want it gone", dir, err)
	}

	// Something else in it: it stays.
	g, err = Prepare(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	makeStale(t, g.Socket, s.UID, s.GID)
	other := filepath.Join(dir, "notes")
	os.WriteFile(other, nil, 0o600)
	Remove(ctx, c, g.Socket)
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("Remove took a file it did not make: %v", err)
	}

	// A chosen directory stays, empty or not.
	chosen := filepath.Join(s.Home, "chosen")
	os.Mkdir(chosen, 0o700)
	os.Chown(chosen, s.UID, s.GID)
	sock := filepath.Join(chosen, "pcscd.comm")
	makeStale(t, sock, s.UID, s.GID)
	Remove(ctx, c, sock)
	if _, err := os.Lstat(chosen); err != nil {
		t.Errorf("Remove took the chosen directory: %v", err)
	}
}

func TestQuoteIfNeeded(t *testing.T) {
	for in, want := range map[string]string{"myvm": "myvm", "dev@10.0.0.7:2222": "dev@10.0.0.7:2222",
		"it's": `'it'\''s'`, "": "''", "a$b": "'a$b'", "~/x": "'~/x'", "/a b/c": "'/a b/c'"} {
		if got := QuoteIfNeeded(in); got != want {
			t.Errorf("QuoteIfNeeded(%q) = %s, want %s", in, got, want)
		}
	}
}
