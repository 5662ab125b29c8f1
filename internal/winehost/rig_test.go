//go:build linux

package winehost

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// dirInRoot is where the chroot sees the test's files.
const dirInRoot = "/cardshare-wine"

// profileInRoot is the Wine user's %USERPROFILE% (C:\users\root for
// HOME=/root) as the chroot sees it.
const profileInRoot = dirInRoot + "/prefix/drive_c/users/root"

// rig is one test's Wine: the chroot, its pcscd with vpcd and the test
// card, and a /tmp that every Wine process of the test shares, so that
// they all talk to one wineserver (two wineservers on one prefix would
// each write its registry).
type rig struct {
	root string
	// dir is dirInRoot on this machine's side.
	dir string
	// tmp is the chroot's /tmp for this test.
	tmp string
	// socket is the pcscd socket as the chroot sees it, for
	// PCSCLITE_CSOCK_NAME.
	socket string
	pcscd  *testenv.PCSCD
}

// newRig starts the chroot's pcscd and relays its socket to where Wine's
// libpcsclite looks for it; it skips the test unless scripts/wine-host.sh
// runs it.
func newRig(t *testing.T) *rig {
	t.Helper()
	root := os.Getenv("CARDSHARE_WINE_ROOT")
	if root == "" {
		t.Skip("run scripts/wine-host.sh, which makes the chroot and sets CARDSHARE_WINE_ROOT")
	}
	r := &rig{root: root, dir: filepath.Join(root, dirInRoot)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "cswine")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(tmp, 0o1777)
	r.tmp = tmp
	t.Cleanup(func() { os.RemoveAll(tmp) }) // after every Wine process is gone
	r.pcscd = testenv.StartPCSCDIn(t, root)
	inRoot := serveUnix(t, filepath.Join(r.dir, "pcscd.comm"), hostpcsc.Socket{Path: r.pcscd.Socket}.Dial)
	r.socket = filepath.Join(dirInRoot, filepath.Base(inRoot))
	return r
}

// build cross-builds pkg for windows/amd64 into the chroot as name and
// returns its path there.
func (r *rig) build(t *testing.T, pkg, name string, test bool) string {
	t.Helper()
	args := []string{"build", "-o", filepath.Join(r.dir, name), pkg}
	if test {
		args = []string{"test", "-c", "-o", filepath.Join(r.dir, name), pkg}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return filepath.Join(dirInRoot, name)
}

// wineScript runs in a mount namespace of its own: the chroot gets /proc,
// /dev and the test's /tmp, then Wine runs the program. $1 root, $2 the
// test's /tmp, $3 the pcscd socket in the chroot, then the program and
// its arguments.
const wineScript = `set -e
root=$1 tmp=$2 sock=$3
shift 3
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind "$tmp" "$root/tmp"
exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin WINEPREFIX=` + dirInRoot + `/prefix \
	WINEDEBUG=-all WINEDLLOVERRIDES=mscoree,mshtml= PCSCLITE_CSOCK_NAME="$sock" \
	/usr/lib/wine/wine64 "$@"
`

// wineProc is a program running under Wine; its stdout and stderr are
// kept together.
type wineProc struct {
	name   string
	exited chan struct{}
	err    error // how it exited, once exited is closed
	out    logtest.Buffer
}

func (w *wineProc) output() string { return w.out.String() }

// waitFor waits until the output matches re and returns the match's last
// submatch (the whole line when re has none).
func (w *wineProc) waitFor(t *testing.T, re string, limit time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(limit)
	for {
		out := w.output()
		if m := rx.FindStringSubmatch(out); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-w.exited:
			t.Fatalf("%s exited (%v) before %q:\n%s", w.name, w.err, re, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after %v:\n%s", w.name, re, limit, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs a program of the chroot under Wine until the test ends.
func (r *rig) start(t *testing.T, exe string, args ...string) *wineProc {
	t.Helper()
	w := &wineProc{name: filepath.Base(exe) + " " + strings.Join(args, " "), exited: make(chan struct{})}
	cmd := exec.Command("sh", append([]string{"-c", wineScript, "wine", r.root, r.tmp, r.socket, exe}, args...)...)
	cmd.Stdout, cmd.Stderr = &w.out, &w.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		// Wine starts wineserver and more: end the whole process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.exited
		if t.Failed() {
			t.Logf("%s under Wine:\n%s", w.name, w.output())
		}
	})
	return w
}

// run runs a program of the chroot under Wine to its end, within limit,
// and returns its output and how it exited.
func (r *rig) run(t *testing.T, limit time.Duration, exe string, args ...string) (string, error) {
	t.Helper()
	w := r.start(t, exe, args...)
	select {
	case <-w.exited:
	case <-time.After(limit):
		t.Fatalf("%s did not end within %v:\n%s", w.name, limit, w.output())
	}
	return w.output(), w.err
}

// checkGuest is what a guest's libpcsclite (this machine's, 1.9.9, the C
// client and pcsc_scan) must get through the socket at guest: both
// readers, "Hello world!" from the card in the first, a blocking wait on
// the empty second that ends when a card is inserted there.
func checkGuest(t *testing.T, p *testenv.PCSCD, guest string, w *wineProc) {
	t.Helper()
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

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := testenv.ClientCommand(ctx, bin, guest, "-r", testenv.VPCDSecondReader, "wait", "40")
	pipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(pipe)
	first, _ := lines.ReadString('\n')
	if !strings.HasPrefix(first, "waiting: EMPTY") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("wait: %q\nwine:\n%s", first, w.output())
	}
	time.Sleep(time.Second)
	p.InsertCardIn(t, testenv.VPCDSecondReader)
	rest, _ := lines.ReadString('\n')
	if err := cmd.Wait(); err != nil || !strings.Contains(rest, "PRESENT") {
		t.Fatalf("wait: %q, %v\nwine:\n%s", rest, err, w.output())
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

// guestDir is a short directory for guest sockets (sun_path is 108 bytes).
func guestDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freshProfileDir removes a directory of the Wine user's profile before
// and after the test, so that no run sees another's keys or pairings.
func (r *rig) freshProfileDir(t *testing.T, rel string) string {
	t.Helper()
	d := filepath.Join(r.root, profileInRoot, rel)
	os.RemoveAll(d)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
