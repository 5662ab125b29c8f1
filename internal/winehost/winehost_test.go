//go:build linux

package winehost

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// dirInRoot is where the chroot sees the test's files.
const dirInRoot = "/cardshare-wine"

// TestWineHost runs testdata/winserve (windows/amd64: bridge.Serve over
// nativepcsc's Source.Dial, a net.Pipe on Windows) under the chroot's
// Wine, whose winscard.dll uses the chroot's libpcsclite and pcscd
// (pcsc-lite 2.3.3, protocol 4.5 strict) with vpcd and the test card. This
// machine's libpcsclite (1.9.9, protocol 4.4) is the guest: list, hello,
// a blocking wait that sees a card inserted, and pcsc_scan, through a
// Unix socket relayed to winserve's loopback TCP port.
func TestWineHost(t *testing.T) {
	root := os.Getenv("CARDSHARE_WINE_ROOT")
	if root == "" {
		t.Skip("run scripts/wine-host.sh, which makes the chroot and sets CARDSHARE_WINE_ROOT")
	}
	p := testenv.StartPCSCDIn(t, root)
	dir := filepath.Join(root, dirInRoot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The chroot's pcscd socket, where Wine's libpcsclite looks for it.
	inRoot := serveUnix(t, filepath.Join(dir, "pcscd.comm"), hostpcsc.Socket{Path: p.Socket}.Dial)

	exe := filepath.Join(dir, "winserve.exe")
	build := exec.Command("go", "build", "-o", exe, "./testdata/winserve")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build winserve.exe: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := startWine(t, root, filepath.Join(dirInRoot, filepath.Base(inRoot)), addr)
	line := w.waitFor(t, "serving on", 3*time.Minute)
	t.Logf("under Wine: %s", w.first)
	t.Logf("under Wine: %s", line)

	guestDir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(guestDir) })
	guest := serveUnix(t, filepath.Join(guestDir, "pcscd.comm"), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})

	bin := testenv.BuildClient(t)
	p.InsertCard(t)
	out, err := testenv.RunClient(t, bin, guest, "list")
	if err != nil || out != testenv.VPCDReader+"\n"+testenv.VPCDSecondReader+"\n" {
		t.Fatalf("list: %q, %v\nwine:\n%s", out, err, w.output())
	}
	out, err = testenv.RunClient(t, bin, guest, "hello")
	if err != nil || !strings.Contains(out, "response: Hello world!") {
		t.Fatalf("hello: %q, %v\nwine:\n%s", out, err, w.output())
	}
	t.Logf("hello through Wine's winscard.dll:\n%s", out)

	// A blocking wait on the empty second reader sees a card arrive.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := testenv.ClientCommand(ctx, bin, guest, "-r", testenv.VPCDSecondReader, "wait", "40")
	pipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(pipe)
	first, _ := r.ReadString('\n')
	if !strings.HasPrefix(first, "waiting: EMPTY") {
		t.Fatalf("wait: %q", first)
	}
	time.Sleep(time.Second)
	p.InsertCardIn(t, testenv.VPCDSecondReader)
	rest, _ := r.ReadString('\n')
	if err := cmd.Wait(); err != nil || !strings.Contains(rest, "PRESENT") {
		t.Fatalf("wait: %q, %v", rest, err)
	}
	t.Logf("wait through Wine: %s%s", first, rest)

	scan, err := testenv.ClientCommand(ctx, "/usr/bin/pcsc_scan", guest, "-r").CombinedOutput()
	if err != nil || !strings.Contains(string(scan), testenv.VPCDSecondReader) {
		t.Fatalf("pcsc_scan -r: %q, %v", scan, err)
	}
	t.Logf("pcsc_scan -r through Wine:\n%s", scan)
}

// serveUnix relays a new Unix socket at path to dial until the test ends.
func serveUnix(t *testing.T, path string, dial bridge.DialFunc) string {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bridge.Serve(ctx, ln, dial, &bridge.Config{})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		os.Remove(path)
	})
	return path
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// wineScript runs in a mount namespace of its own: the chroot gets /proc,
// /dev and a /tmp, then Wine runs winserve.exe. $1 root, $2 the pcscd
// socket in the chroot, $3 the address.
const wineScript = `set -e
mount -t proc proc "$1/proc"
mount --bind /dev "$1/dev"
mount -t tmpfs tmpfs "$1/tmp"
exec chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin WINEPREFIX=` + dirInRoot + `/prefix \
	WINEDEBUG=-all WINEDLLOVERRIDES=mscoree,mshtml= PCSCLITE_CSOCK_NAME="$2" \
	/usr/lib/wine/wine64 ` + dirInRoot + `/winserve.exe "$3"
`

type wineProc struct {
	exited chan struct{}
	mu     sync.Mutex
	out    strings.Builder
	first  string
}

func (w *wineProc) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(b)
}

func (w *wineProc) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

func (w *wineProc) waitFor(t *testing.T, s string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out := w.output()
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "library ") {
				w.first = l
			}
			if strings.Contains(l, s) {
				return l
			}
		}
		select {
		case <-w.exited:
			t.Fatalf("wine exited before %q:\n%s", s, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wine: no %q after %v:\n%s", s, limit, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startWine(t *testing.T, root, socket, addr string) *wineProc {
	t.Helper()
	w := &wineProc{exited: make(chan struct{})}
	cmd := exec.Command("sh", "-c", wineScript, "wine", root, socket, addr)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		// Wine starts wineserver and more: end the whole process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.exited
		if t.Failed() {
			t.Logf("wine output:\n%s", w.output())
		}
	})
	return w
}
