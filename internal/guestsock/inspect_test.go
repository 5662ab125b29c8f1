package guestsock

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

func TestInspectSocket(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")

	g, err := Inspect(ctx, c, "", time.Second)
	if err != nil || g.Socket != sock || g.State != Free || g.OS != "Linux" {
		t.Fatalf("fresh guest: %+v, %v", g, err)
	}
	if g.Client == nil || g.Client.Version != pcsc.V44 {
		t.Errorf("guest client %v, want Debian 12's libpcsclite (4.4)", g.Client)
	}

	makeStale(t, sock, s.UID, s.GID)
	if g, err := Inspect(ctx, c, "", time.Second); err != nil || g.State != Stale {
		t.Errorf("stale socket: %+v, %v", g, err)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("Inspect removed the stale socket: %v", err)
	}

	// A live forward (the guest's end of another cardshare) is in use.
	os.Remove(sock)
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
			conn.Close()
		}
	}()
	if g, err := Inspect(ctx, c, "", time.Second); err != nil || g.State != InUse {
		t.Errorf("live socket: %+v, %v", g, err)
	}

	if _, err := Inspect(ctx, c, "/tmp/shared.sock", time.Second); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("socket in /tmp: %v, want ErrUnsafeDir", err)
	}
}

func makeStale(t *testing.T, path string, uid, gid int) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.Chown(filepath.Dir(path), uid, gid)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	os.Chown(path, uid, gid)
}

// harnessClient connects to the test sshd as its guest user.
func harnessClient(t *testing.T, s *testenv.SSHD) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshdial.Dial(ctx, tg, sshdial.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
