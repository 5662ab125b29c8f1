//go:build unix

package guestsock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// The path script checks the socket's directory and those above it with
// one find, and with ls one at a time where find cannot; both ways give
// the same answers: a directory of another user is refused, one that
// others may write to (or that sits in one, unless sticky) is unsafe, the
// default directory must be the user's own, and a good path is taken.
func TestPathScriptWithAndWithoutFind(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A PATH with the programs the script may use, but no find.
	nofind := filepath.Join(s.Dir, "nofind")
	os.Mkdir(nofind, 0o755)
	for _, p := range []string{"ls", "id", "mkdir", "chmod", "dirname", "uname"} {
		if full, err := exec.LookPath(p); err == nil {
			os.Symlink(full, filepath.Join(nofind, p))
		}
	}
	mk := func(mode os.FileMode, uid int, parts ...string) string {
		p := filepath.Join(append([]string{s.Dir}, parts...)...)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chown(p, uid, -1)
		return p
	}
	mk(0o755, 0, "p")
	mine := mk(0o700, s.UID, "p", "mine")
	others := mk(0o755, s.UID+1, "p", "others")
	open := mk(0o777, s.UID, "p", "open")
	under := mk(0o700, s.UID, "p", "open", "mine")
	mk(os.ModeSticky|0o777, 0, "p", "sticky")
	sticky := mk(0o700, s.UID, "p", "sticky", "mine")
	rootOwned := mk(0o755, 0, "p", "root")

	run := func(path, want string) (Info, error) {
		vars := []string{"want", want, "maxdir", strconv.Itoa(unixsock.MaxDir)}
		if path != "" {
			vars = append(vars, "PATH", path)
		}
		out, err := Run(ctx, c, pathScript, vars...)
		if err != nil {
			return Info{}, err
		}
		return parseInfo(out)
	}
	for _, path := range []string{"", nofind} {
		for _, tc := range []struct {
			dir     string
			wantErr string // "" for none, else a part of the error
		}{
			{mine, ""},
			{sticky, ""},
			{rootOwned, ""},
			{others, "owned by another user"},
			{open, "writable by other users: " + open},
			{under, "writable by other users: " + open},
		} {
			sock := filepath.Join(tc.dir, "pcscd.comm")
			g, err := run(path, sock)
			switch {
			case tc.wantErr == "" && (err != nil || g.Socket != sock):
				t.Errorf("PATH %q, %s: %+v, %v; want it taken", path, tc.dir, g, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("PATH %q, %s: %v; want an error with %q", path, tc.dir, err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, "writable") && !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("PATH %q, %s: %v is not ErrUnsafeDir", path, tc.dir, err)
			}
		}
		// The default directory.
		g, err := run(path, "")
		if err != nil || !strings.HasSuffix(g.Socket, "/pcscd.comm") {
			t.Errorf("PATH %q, default directory: %+v, %v", path, g, err)
		}
		dir := filepath.Dir(g.Socket)
		os.Chown(dir, 0, -1)
		if _, err := run(path, ""); err == nil || !strings.Contains(err.Error(), "is not owned by") {
			t.Errorf("PATH %q, default directory owned by root: %v; want it refused", path, err)
		}
		os.Chown(dir, s.UID, -1)
	}
}
