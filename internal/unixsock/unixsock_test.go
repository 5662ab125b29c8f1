package unixsock_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cardshare/cardshare/internal/unixsock"
)

func TestListenGuestSocket(t *testing.T) {
	base, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	sock := filepath.Join(base, "d", "pcscd.comm")
	ln, err := unixsock.ListenGuestSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Dir(sock)); fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := unixsock.ListenGuestSocket(sock); !errors.Is(err, unixsock.ErrSocketInUse) {
		t.Errorf("second listener: %v, want ErrSocketInUse", err)
	}
	// A socket left behind by a crash is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = unixsock.ListenGuestSocket(sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln.Close()
	file := filepath.Join(base, "d", "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := unixsock.ListenGuestSocket(file); err == nil {
		t.Error("listening over a regular file: no error")
	}
	if _, err := unixsock.ListenGuestSocket("relative/pcscd.comm"); err == nil {
		t.Error("relative path: no error")
	}
	if p := unixsock.DefaultGuestSocket(); !filepath.IsAbs(p) || filepath.Base(p) != "pcscd.comm" {
		t.Errorf("default socket %q", p)
	}
}

func TestPrivateFiles(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "f")
	if err := unixsock.WriteFileAtomic(p, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := unixsock.CheckPrivateFile(p); err != nil {
		t.Errorf("fresh file: %v", err)
	}
	os.Chmod(p, 0o644)
	if err := unixsock.CheckPrivateFile(p); !errors.Is(err, unixsock.ErrUnsafePermissions) {
		t.Errorf("mode 0644: %v, want ErrUnsafePermissions", err)
	}
	os.Chmod(dir, 0o755)
	if err := unixsock.MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("MkdirPrivate left mode %v", fi.Mode().Perm())
	}
}
