package forward

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

func TestProbeStreamLocal(t *testing.T) {
	t.Parallel()
	ok := testenv.StartSSHD(t, testenv.SSHDOptions{})
	refused := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	if err := ProbeStreamLocal(context.Background(), harnessClient(t, ok)); err != nil {
		t.Errorf("allowed: %v", err)
	}
	if m, _ := filepath.Glob("/tmp/cardshare-doctor.*"); len(m) > 0 {
		// Other tests may probe at the same time; ours must be gone.
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fileOwner(fi) == ok.UID {
				t.Errorf("probe directory %s left behind", d)
			}
		}
	}
	err := ProbeStreamLocal(context.Background(), harnessClient(t, refused))
	if !errors.Is(err, ErrForwardRefused) {
		t.Errorf("refused: err = %v, want ErrForwardRefused", err)
	}
}

func TestInspectSocket(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	sock := filepath.Join(s.Home, ".cardshare", "pcscd.comm")

	g, err := InspectSocket(ctx, c, "", time.Second)
	if err != nil || g.Socket != sock || g.State != SocketFree || g.OS != "Linux" {
		t.Fatalf("fresh guest: %+v, %v", g, err)
	}
	if g.Client == nil || g.Client.Version != pcsc.V44 {
		t.Errorf("guest client %v, want Debian 12's libpcsclite (4.4)", g.Client)
	}

	makeStale(t, sock, s.UID, s.GID)
	if g, err := InspectSocket(ctx, c, "", time.Second); err != nil || g.State != SocketStale {
		t.Errorf("stale socket: %+v, %v", g, err)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("InspectSocket removed the stale socket: %v", err)
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
	if g, err := InspectSocket(ctx, c, "", time.Second); err != nil || g.State != SocketInUse {
		t.Errorf("live socket: %+v, %v", g, err)
	}

	if _, err := InspectSocket(ctx, c, "/tmp/shared.sock", time.Second); !errors.Is(err, ErrUnsafeDir) {
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

func TestInspectEnv(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	e, err := InspectEnv(ctx, c)
	if err != nil || e.Profile != ".profile" || e.ProfileSocket != "" || e.Shell != "/bin/sh" {
		t.Fatalf("before setup: %+v, %v", e, err)
	}
	const sock = "/tmp/it's here/pcscd.comm"
	src, _, _ := withBlock(nil, false, sock)
	writeAsGuest(t, s, ".profile", string(src))
	if e, err := InspectEnv(ctx, c); err != nil || e.ProfileSocket != sock {
		t.Errorf("after setup: %+v, %v", e, err)
	}
}

func fileOwner(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
