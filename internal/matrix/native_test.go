//go:build linux

package matrix

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// TestVersionMatrixNative runs the C client and pcsc_scan of each
// release against cardshare's native backend (internal/nativepcsc over
// this machine's libpcsclite and pcscd): the daemon end answers each
// client's protocol natively (4.4, 4.5 strict, 4.6), so every cell must
// pass. A native host's library always matches its own daemon, so the
// daemon axis of the socket matrix has one column here.
func TestVersionMatrixNative(t *testing.T) {
	cache := os.Getenv("CARDSHARE_MATRIX_CACHE")
	if cache == "" {
		t.Skip("run scripts/version-matrix.sh, which makes the chroots and sets CARDSHARE_MATRIX_CACHE")
	}
	host := &release{name: "bookworm", pcsc: "1.9.9"}
	host.daemon = testenv.StartPCSCD(t)
	host.daemon.InsertCard(t)
	scardtest.UseSocket(t, host.daemon.Socket)
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	src, err := nativepcsc.New(lib, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	bin := testenv.BuildClient(t)
	rels := []*release{
		{name: "bookworm", pcsc: "1.9.9"},
		{name: "trixie", pcsc: "2.3.3", root: filepath.Join(cache, "trixie")},
		{name: "sid", pcsc: "2.5.3", root: filepath.Join(cache, "sid")},
	}
	for _, c := range rels {
		if c.root == "" {
			dir, err := os.MkdirTemp("", "cs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			c.sockDir = dir
		} else {
			c.sockDir = filepath.Join(c.root, clientDir)
			os.RemoveAll(c.sockDir)
			if err := os.MkdirAll(c.sockDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := copyFile(filepath.Join(c.sockDir, "pcscclient"), bin); err != nil {
				t.Fatal(err)
			}
		}
		sock := filepath.Join(c.sockDir, "native.comm")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(sock, 0o666)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			// As cardshare serves it: the opening checked, then the
			// connection handed to the Source (bridge.Config.Local).
			bridge.Serve(ctx, ln, src.Dial, &bridge.Config{Daemon: nativepcsc.Daemon, Local: src})
		}()
		got := runCell(t, bin, c, sock, host)
		cancel()
		<-done
		t.Logf("| %s %s client | native backend (host pcscd %s) | %s |", c.name, c.pcsc, host.pcsc, got)
		if got != "OK" {
			t.Errorf("native: %s client: %s", c.name, got)
		}
	}
}

// TestNativePolicy: a reader policy and the audit log apply to the native
// backend as to the pcscd socket, since bridge.Serve's proxy stage runs on
// the connection Source.Dial returns: the guest lists and reaches only the
// readers the policy allows, by the names the host's library gives.
func TestNativePolicy(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCardIn(t, testenv.VPCDSecondReader)
	scardtest.UseSocket(t, p.Socket)
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	src, err := nativepcsc.New(lib, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "guest.comm")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := new(lockedBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.Serve(ctx, ln, src.Dial, &bridge.Config{
			Daemon: nativepcsc.Daemon, Audit: true, Logger: slog.New(slog.NewTextHandler(log, nil)),
			Policy: &pcsc.Policy{Readers: []string{"* 01"}, DenyControl: true},
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	bin := testenv.BuildClient(t)
	if out, err := testenv.RunClient(t, bin, sock, "list"); err != nil || out != testenv.VPCDSecondReader+"\n" {
		t.Errorf("list: %q, %v", out, err)
	}
	if out, err := testenv.RunClient(t, bin, sock, "hello"); err != nil || !strings.Contains(out, "Hello world!") {
		t.Errorf("hello: %q, %v", out, err)
	}
	if out, err := testenv.RunClient(t, bin, sock, "-r", testenv.VPCDReader, "hello"); err == nil || !strings.Contains(err.Error(), "0x80100009") {
		t.Errorf("hidden reader: %q, %v", out, err)
	}
	if !strings.Contains(log.String(), `cmd=SCARD_CONNECT reader="`+testenv.VPCDSecondReader+`" rv=0x00000000`) {
		t.Errorf("no audit line for the connect:\n%s", log)
	}
}
