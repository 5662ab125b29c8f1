//go:build linux

package matrix

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// release is a Debian release whose pcsc-lite the matrix runs.
type release struct {
	name    string // Debian's
	pcsc    string // pcsc-lite's, as Debian packages it
	root    string // its root file system; "" is this machine (bookworm)
	daemon  *testenv.PCSCD
	probed  pcsc.Daemon
	sockDir string // where guest sockets for its clients go, as seen here
}

// clientDir is where a chroot's client finds the binary and the sockets.
const clientDir = "/cardshare-matrix"

// TestVersionMatrix: each cell runs the C client of one release against
// the daemon of another, through a byte relay (bridge.Serve knowing nothing
// of the daemon: what socat or ssh -R do) and through cardshare (bridge.Serve
// with the probed daemon, which translates). A cell is OK when the client
// lists both readers, says hello to the card (connect and transmit), a
// blocking SCardGetStatusChange sees a card inserted, and the release's
// pcsc_scan (reader plug and play, the way most people first try a reader)
// shows both readers without an error.
func TestVersionMatrix(t *testing.T) {
	cache := os.Getenv("CARDSHARE_MATRIX_CACHE")
	if cache == "" {
		t.Skip("run scripts/version-matrix.sh, which makes the chroots and sets CARDSHARE_MATRIX_CACHE")
	}
	rels := releases(cache)
	bin := testenv.BuildClient(t)
	for _, r := range rels {
		r.prepareClient(t, bin)
		r.startDaemon(t)
		r.daemon.InsertCard(t)
		d, err := pcsc.Probe(context.Background(), r.daemon.Socket)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		r.probed = d
		t.Logf("%s: pcscd %s, %s, %d reader slots", r.name, r.pcsc, d, d.Readers)
	}

	type cell struct{ bytes, cardshare string }
	results := map[[2]string]cell{}
	log := new(logtest.Buffer)
	for _, d := range rels {
		for _, c := range rels {
			var res cell
			for _, mode := range []string{"bytes", "cardshare"} {
				cfg := &bridge.Config{Logger: slog.New(slog.NewTextHandler(log, nil))}
				if mode == "cardshare" {
					cfg.Daemon = d.probed
				}
				name := fmt.Sprintf("%s-%s.comm", d.name, mode)
				sock := serve(t, filepath.Join(c.sockDir, name), d.daemon.Socket, cfg)
				got := runCell(t, bin, c, sock, d)
				if mode == "bytes" {
					res.bytes = got
				} else {
					res.cardshare = got
					if got != "OK" {
						t.Errorf("cardshare: %s client on %s daemon: %s", c.name, d.name, got)
					}
				}
			}
			results[[2]string{c.name, d.name}] = res
		}
	}

	var b strings.Builder
	for _, mode := range []string{"byte relay", "cardshare"} {
		b.WriteString(table(mode+" (rows: client libpcsclite, columns: host pcscd)", "client \\ daemon", rels,
			func(d *release) string { return fmt.Sprintf("%s %s (%s)", d.name, d.pcsc, d.probed.Version) },
			func(c, d *release) string {
				r := results[[2]string{c.name, d.name}]
				if mode == "byte relay" {
					return r.bytes
				}
				return r.cardshare
			}))
	}
	fmt.Println(b.String())
	if t.Failed() {
		t.Logf("relay log:\n%s", log)
	}
}

// releases returns the rig's three releases; cache holds the chroots
// scripts/version-matrix.sh makes.
func releases(cache string) []*release {
	return []*release{
		{name: "bookworm", pcsc: "1.9.9"},
		{name: "trixie", pcsc: "2.3.3", root: filepath.Join(cache, "trixie")},
		{name: "sid", pcsc: "2.5.3", root: filepath.Join(cache, "sid")},
	}
}

// prepareClient makes r.sockDir, where the guest sockets of r's clients
// go: a new temporary directory here, or clientDir of r's chroot, emptied,
// with a copy of the C test client bin.
func (r *release) prepareClient(t *testing.T, bin string) {
	t.Helper()
	if r.root == "" {
		dir, err := os.MkdirTemp("", "cs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		r.sockDir = dir
		return
	}
	r.sockDir = filepath.Join(r.root, clientDir)
	os.RemoveAll(r.sockDir)
	if err := os.MkdirAll(r.sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(filepath.Join(r.sockDir, "pcscclient"), bin); err != nil {
		t.Fatal(err)
	}
}

// startDaemon starts r's pcscd, with vpcd's two readers, for the test.
func (r *release) startDaemon(t *testing.T) {
	t.Helper()
	if r.root == "" {
		r.daemon = testenv.StartPCSCD(t)
	} else {
		r.daemon = testenv.StartPCSCDIn(t, r.root)
	}
}

// table formats a 3×3 result: a title line, then a Markdown table with a
// row per client release and a column per host release.
func table(title, corner string, rels []*release, column func(h *release) string, cell func(c, h *release) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n\n| %s |", title, corner)
	for _, h := range rels {
		fmt.Fprintf(&b, " %s |", column(h))
	}
	b.WriteString("\n|---|")
	for range rels {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, c := range rels {
		fmt.Fprintf(&b, "| %s %s |", c.name, c.pcsc)
		for _, h := range rels {
			fmt.Fprintf(&b, " %s |", cell(c, h))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// serve runs bridge.Serve on a new socket at path until the test ends.
func serve(t *testing.T, path, pcscd string, cfg *bridge.Config) string {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: pcscd}.Dial, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return path
}

// client returns the command that runs the client of release c with args
// on the guest socket sock (a path under c.sockDir).
func client(ctx context.Context, bin string, c *release, sock string, args ...string) *exec.Cmd {
	return command(ctx, c, sock, bin, filepath.Join(clientDir, "pcscclient"), args...)
}

// command runs a program of release c, at path here or at inRoot in its
// chroot, with PCSCLITE_CSOCK_NAME pointing at sock.
func command(ctx context.Context, c *release, sock, path, inRoot string, args ...string) *exec.Cmd {
	if c.root == "" {
		return testenv.ClientCommand(ctx, path, sock, args...)
	}
	sockInRoot := filepath.Join(clientDir, filepath.Base(sock))
	cmd := exec.CommandContext(ctx, "chroot", append([]string{c.root, inRoot}, args...)...)
	cmd.Env = []string{"PCSCLITE_CSOCK_NAME=" + sockInRoot, "PATH=/usr/bin:/bin", "TERM=dumb"}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func run(ctx context.Context, bin string, c *release, sock string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := client(ctx, bin, c, sock, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s", firstLine(stderr.String(), err))
	}
	return stdout.String(), nil
}

func firstLine(s string, err error) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return err.Error()
	}
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimPrefix(s, "pcscclient: ")
}

// runCell runs the checks of one cell and says OK or what failed first.
func runCell(t *testing.T, bin string, c *release, sock string, d *release) string {
	ctx := t.Context()
	out, err := run(ctx, bin, c, sock, "list")
	if err != nil {
		return "list: " + err.Error()
	}
	if out != testenv.VPCDReader+"\n"+testenv.VPCDSecondReader+"\n" {
		return fmt.Sprintf("list: %q", out)
	}
	out, err = run(ctx, bin, c, sock, "hello")
	if err != nil {
		return "hello: " + err.Error()
	}
	if !strings.Contains(out, "response: Hello world!") {
		return fmt.Sprintf("hello: %q", out)
	}

	// The wait: the second reader is empty; a card comes. The previous
	// cell's card is gone from pcscd (RemoveCard), but the native backend
	// learns that through its host library's own wait, which on a loaded
	// machine can take a few tens of milliseconds longer: a wait that
	// starts on PRESENT is ended and started again, for up to 5 s.
	deadline := time.Now().Add(5 * time.Second)
	var (
		cmd    *exec.Cmd
		r      *bufio.Reader
		stderr *bytes.Buffer
	)
	for {
		var first string
		cmd, r, stderr, first, err = startWait(t, bin, c, sock)
		if err == nil && strings.HasPrefix(first, "waiting: EMPTY") {
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil || !strings.HasPrefix(first, "waiting: PRESENT") || time.Now().After(deadline) {
			return "wait: " + firstLine(stderr.String(), fmt.Errorf("%q, %v", first, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	done := make(chan string, 1)
	go func() {
		rest, _ := io.ReadAll(r)
		err := cmd.Wait()
		if err != nil {
			done <- "wait: " + firstLine(stderr.String(), err)
			return
		}
		done <- string(rest)
	}()
	card := d.daemon.InsertCardIn(t, testenv.VPCDSecondReader)
	defer d.daemon.RemoveCard(t, card)
	select {
	case rest := <-done:
		if !strings.Contains(rest, "PRESENT") {
			return "wait: " + strings.TrimSpace(rest)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		return "wait: no change seen"
	}
	return scan(ctx, c, sock)
}

// startWait starts the client of release c waiting for a change of the
// second reader, and reads the line where it says the reader's state.
func startWait(t *testing.T, bin string, c *release, sock string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer, string, error) {
	cmd := client(t.Context(), bin, c, sock, "-r", testenv.VPCDSecondReader, "wait", "30")
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(pipe)
	first, err := r.ReadString('\n')
	return cmd, r, stderr, first, err
}

// scanError finds pcsc_scan's error lines, "SCardFunction: message".
var scanError = regexp.MustCompile(`SCard\w+: [^\n]*`)

// scan runs pcsc_scan of release c for two seconds. It ends by cancelling
// its own wait ("Command cancelled"); any other error fails the cell.
func scan(ctx context.Context, c *release, sock string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	path, err := exec.LookPath("pcsc_scan")
	if err != nil && c.root == "" {
		return "OK (no pcsc_scan here)"
	}
	out, _ := command(ctx, c, sock, path, "/usr/bin/pcsc_scan", "-n", "-t", "2").CombinedOutput()
	for _, e := range scanError.FindAllString(string(out), -1) {
		if !strings.Contains(e, "Command cancelled") {
			return "pcsc_scan: " + strings.TrimSpace(e)
		}
	}
	for _, r := range []string{testenv.VPCDReader, testenv.VPCDSecondReader} {
		if !strings.Contains(string(out), r) {
			return fmt.Sprintf("pcsc_scan: no %q in %q", r, out)
		}
	}
	return "OK"
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
