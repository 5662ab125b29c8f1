//go:build linux

package matrix

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cardshare/cardshare/internal/nativepcsc"
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
			src.Serve(ctx, ln)
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
