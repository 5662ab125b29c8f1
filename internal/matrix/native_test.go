//go:build linux

package matrix

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// TestVersionMatrixNative runs cardshare's native backend as the host of
// each release: testdata/nativehost (hostpcsc's native source under
// bridge.Serve, built with CGO_ENABLED=0 as cardshare is) runs in that
// release's environment, where purego loads the release's libpcsclite,
// which talks to the release's pcscd (through a byte relay into the
// chroot). The C client and pcsc_scan of each release are its guests, as
// in TestVersionMatrix: the native backend answers each client's protocol
// natively (4.4, 4.5 strict, 4.6) whatever its host library speaks, so all
// nine cells must pass. Then each host's pcscd restarts under the backend
// (restart), which must recover on each release's library.
func TestVersionMatrixNative(t *testing.T) {
	cache := os.Getenv("CARDSHARE_MATRIX_CACHE")
	if cache == "" {
		t.Skip("run scripts/version-matrix.sh, which makes the chroots and sets CARDSHARE_MATRIX_CACHE")
	}
	rels := releases(cache)
	bin := testenv.BuildClient(t)
	host := buildNativeHost(t)
	for _, c := range rels {
		c.prepareClient(t, bin)
	}
	results := map[[2]string]string{}
	libs := map[string]string{}
	restarted := map[string]string{}
	for _, h := range rels {
		t.Run(h.name, func(t *testing.T) {
			h.startDaemon(t)
			h.daemon.InsertCard(t)
			sock, lib := startNativeHost(t, host, h)
			libs[h.name] = lib
			log := new(logtest.Buffer)
			for _, c := range rels {
				guest := sock
				if c != h {
					// Another release's client reaches the host's socket
					// from its own chroot through a byte relay.
					guest = serve(t, filepath.Join(c.sockDir, "native-"+h.name+".comm"), sock,
						&bridge.Config{Logger: slog.New(slog.NewTextHandler(log, nil))})
				}
				got := runCell(t, bin, c, guest, h)
				results[[2]string{c.name, h.name}] = got
				if got != "OK" {
					t.Errorf("native backend on %s: %s client: %s", h.name, c.name, got)
				}
			}
			restarted[h.name] = restart(t, bin, h, sock)
			if t.Failed() {
				t.Logf("relay log:\n%s", log)
			}
		})
	}
	for _, h := range rels {
		t.Logf("%s host: %s; after a pcscd restart: %s", h.name, libs[h.name], restarted[h.name])
	}
	fmt.Println(table("native backend (rows: client libpcsclite, columns: the host's libpcsclite and pcscd under cardshare's native backend)",
		"client \\ native host", rels,
		func(h *release) string { return h.name + " " + h.pcsc },
		func(c, h *release) string {
			if got, ok := results[[2]string{c.name, h.name}]; ok {
				return got
			}
			return "not run"
		}))
}

// restart restarts h's pcscd under the native backend hosted on h: once
// h's client gets hello world through it again (within 20 s: the event
// loop must notice that its host library lost the service and establish
// a new context), the cell of h's own client must pass again, a blocking
// wait that sees a card inserted included. It says how it went.
func restart(t *testing.T, bin string, h *release, sock string) string {
	t.Helper()
	start := time.Now()
	h.daemon.Restart(t)
	h.daemon.InsertCard(t)
	for {
		out, err := run(t.Context(), bin, h, sock, "hello")
		if err == nil && strings.Contains(out, "response: Hello world!") {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Errorf("native backend on %s: no hello world 20 s after a pcscd restart: %q, %v", h.name, out, err)
			return fmt.Sprintf("no hello world: %q, %v", out, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	back := time.Since(start).Round(10 * time.Millisecond)
	got := runCell(t, bin, h, sock, h)
	if got != "OK" {
		t.Errorf("native backend on %s, after a pcscd restart: %s client: %s", h.name, h.name, got)
	}
	return fmt.Sprintf("hello world again after %v, then its own client's cell: %s", back, got)
}

// buildNativeHost builds testdata/nativehost for this machine without cgo
// (purego then brings its own dlopen), as cardshare's binaries are built.
func buildNativeHost(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "nativehost")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/nativehost")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nativehost: %v\n%s", err, msg)
	}
	return out
}

// startNativeHost runs nativehost in h's environment until the test ends:
// in h's chroot, on its libpcsclite, with PCSCLITE_CSOCK_NAME at a byte
// relay to h's pcscd; or here, on this machine's, at the pcscd socket. It
// returns the socket nativehost serves (in h.sockDir) and the line where
// it names the library it loaded.
func startNativeHost(t *testing.T, bin string, h *release) (sock, lib string) {
	t.Helper()
	sock = filepath.Join(h.sockDir, "native.comm")
	pcscd, path, listen := h.daemon.Socket, bin, sock
	if h.root != "" {
		pcscd = serve(t, filepath.Join(h.sockDir, "pcscd.comm"), h.daemon.Socket, &bridge.Config{})
		path = filepath.Join(h.sockDir, "nativehost")
		if err := copyFile(path, bin); err != nil {
			t.Fatal(err)
		}
		listen = filepath.Join(clientDir, filepath.Base(sock))
	}
	out := new(logtest.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := command(ctx, h, pcscd, path, filepath.Join(clientDir, "nativehost"), listen)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel() // SIGTERM: nativehost closes its source and exits 0
		if err := <-exited; cmd.ProcessState == nil || !cmd.ProcessState.Success() {
			t.Errorf("nativehost on %s: %v", h.name, err)
		}
		if t.Failed() {
			t.Logf("nativehost on %s (audit lines, no payloads):\n%s", h.name, out)
			return
		}
		for l := range strings.Lines(out.String()) {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Logf("nativehost on %s: %s", h.name, strings.TrimSpace(l))
			}
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		text := out.String()
		if strings.Contains(text, "serving on ") {
			for l := range strings.Lines(text) {
				if strings.HasPrefix(l, "library ") {
					lib = strings.TrimSpace(l)
				}
			}
			return sock, lib
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("nativehost on %s exited: %v\n%s", h.name, err, text)
		case <-deadline:
			t.Fatalf("nativehost on %s: not serving after 30 s:\n%s", h.name, text)
		case <-time.After(50 * time.Millisecond):
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
	log := new(logtest.Buffer)
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
