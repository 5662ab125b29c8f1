package scardtest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// libpcsclite reads PCSCLITE_CSOCK_NAME once per process and keeps the
// path (src/winscard_msg.c getSocketName). A test binary that starts a
// pcscd per test therefore points the variable at a symbolic link it owns
// and re-points the link: connect(2) and stat(2) follow it.
var link struct {
	once sync.Once
	path string
	err  error
}

// UseSocket makes the libpcsclite of this process talk to the pcscd socket
// at path, from now until the next UseSocket. Tests that use it must not
// run in parallel with each other.
func UseSocket(t testing.TB, path string) {
	t.Helper()
	link.once.Do(func() {
		dir, err := os.MkdirTemp("", "cs-scard")
		if err != nil {
			link.err = err
			return
		}
		link.path = filepath.Join(dir, "pcscd.comm")
		link.err = os.Setenv("PCSCLITE_CSOCK_NAME", link.path)
	})
	if link.err != nil {
		t.Fatalf("scardtest: %v", link.err)
	}
	tmp := link.path + ".new"
	os.Remove(tmp)
	if err := os.Symlink(path, tmp); err != nil {
		t.Fatalf("scardtest: %v", err)
	}
	if err := os.Rename(tmp, link.path); err != nil {
		t.Fatalf("scardtest: %v", err)
	}
}
