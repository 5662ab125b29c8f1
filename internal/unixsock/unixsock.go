package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// MaxPath keeps socket paths inside sun_path on every Unix: 108 bytes on
// Linux and 104 on the BSDs and macOS, each with a NUL.
// The guest's shell computes the same limits from these (package
// guestsock passes them to its scripts), so that both sides agree.
const MaxPath = 103

// MaxDir is the longest default socket directory (GuestSocketFor, and
// guestsock's default_dir in the guest's shell): room for "/pcscd.comm"
// below MaxPath.
const MaxDir = MaxPath - 12

// ErrSocketInUse means a live listener already serves the socket path.
var ErrSocketInUse = errors.New("guest socket is in use by another listener")

// DefaultGuestSocket returns where the agent serves pcsc-lite in the guest
// when not told otherwise: GuestSocketFor this process's environment and
// user, the same place as SSH mode.
func DefaultGuestSocket() string { return GuestSocketFor(os.Getenv, os.Getuid()) }

// GuestSocketFor returns the default guest socket of the user uid whose
// environment getenv reads: pcscd.comm in $XDG_RUNTIME_DIR/cardshare, else
// ~/.cardshare, else /tmp/cardshare-UID when those are missing or too long
// for a socket. Only the user can enter the directory, so other guest users
// cannot reach the card. SSH mode computes the same in the guest's shell
// (forward's default_dir); both modes use this for what they print.
func GuestSocketFor(getenv func(string) string, uid int) string {
	dir := ""
	if x := getenv("XDG_RUNTIME_DIR"); x != "" && isDir(x) {
		dir = x + "/cardshare"
	} else if h := getenv("HOME"); h != "" && isDir(h) {
		dir = h + "/.cardshare"
	}
	if dir == "" || len(dir) > MaxDir {
		dir = "/tmp/cardshare-" + strconv.Itoa(uid)
	}
	return dir + "/pcscd.comm"
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ListenGuestSocket listens on the Unix socket path for guest programs. It
// creates path's directory with mode 0700 when missing and refuses one that
// other users may enter or write to, or that belongs to someone else. A
// socket left at path by an earlier run is removed; one that a live listener
// serves is not (ErrSocketInUse).
func ListenGuestSocket(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) || len(path) > MaxPath {
		return nil, fmt.Errorf("guest socket %q must be an absolute path of at most %d bytes", path, MaxPath)
	}
	if err := MkdirPrivate(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := ClearStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ClearStale removes a socket at path that nothing serves: one left behind
// by a process that ended without removing it. It refuses to remove a file
// that is not a socket, and a socket that a live listener serves
// (ErrSocketInUse).
func ClearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
