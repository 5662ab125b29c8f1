package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/vcard"
)

// Paths from Debian 12's packages pcscd and vsmartcard-vpcd.
const (
	pcscdPath      = "/usr/sbin/pcscd"
	vpcdDriverPath = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	// pcscDriversDir holds the USB reader drivers (*.bundle). The test pcscd
	// sees it empty, so it leaves real readers to the system's pcscd.
	pcscDriversDir = "/usr/lib/pcsc/drivers"
)

// installTestDepsHint says how to get what the harness needs.
const installTestDepsHint = "run scripts/install-test-deps.sh as root (it installs pcscd, vsmartcard-vpcd, libpcsclite-dev, gcc and the rest)"

// Reader names pcscd gives vpcd's two slots. Each StartPCSCD instance has
// both; InsertCard uses VPCDReader.
const (
	VPCDReader       = "Virtual PCD 00 00"
	VPCDSecondReader = "Virtual PCD 00 01"
)

var vpcdReaders = []string{VPCDReader, VPCDSecondReader}

// pcscdReaderConf is the reader.conf.d entry for vpcd. DEVICENAME
// "/dev/null:PORT" is vpcd's server mode: it listens on 0.0.0.0:PORT for slot
// 0 and PORT+1 for slot 1, and the card connects to it. Any other host name
// before the colon is the reverse mode, where vpcd connects to the card; the
// vpcd of Debian 12 tries that only once, when pcscd starts, so a card could
// never be inserted later (fixed upstream in 2022, commit 76543ea). vpcd cannot
// bind 127.0.0.1 only, hence the private network namespace.
// Sources: vsmartcard virtualsmartcard/src/ifd-vpcd/ifd-vpcd.c
// IFDHCreateChannelByName, virtualsmartcard/src/vpcd/vpcd.c opensock and
// vicc_connect.
var pcscdReaderConf = fmt.Sprintf(`FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x%X
LIBPATH      %%s
CHANNELID    0x%X
`, vcard.DefaultPort, vcard.DefaultPort)

// pcscdScript runs in pcscd's new mount and network namespaces
// (pcscdSysProcAttr) and execs pcscd, so that pcscd keeps the PID Go started and
// can match LISTEN_PID. $1 is the instance's directory, $2 the pcscd binary,
// $3 its log level option.
//
// pcscd creates /run/pcscd and writes /run/pcscd/pcscd.pid whatever socket it
// serves, and removes the PID file when it exits (pcsc-lite 1.9.9
// src/pcscdaemon.c:618-706, 821-837); the bind mount gives it a /run of its
// own so it leaves the host's (and the system pcscd's files) alone.
const pcscdScript = `set -e
mount --bind "$1/run" /run
mount --bind "$1/drivers" ` + pcscDriversDir + `
export LISTEN_FDS=1 LISTEN_PID=$$
exec "$2" --foreground "$3" --config "$1/reader.conf.d"
`

// rootInstanceDir is where a chrooted pcscd (StartPCSCDIn) sees its
// instance's directory.
const rootInstanceDir = "/cardshare-testenv"

// pcscdRootScript is pcscdScript for a pcscd in the root file system $4:
// the instance's directory, /run, /dev and /proc are mounted into it, in
// pcscd's own mount namespace.
const pcscdRootScript = `set -e
mount --bind "$1" "$4` + rootInstanceDir + `"
mount --bind "$1/run" "$4/run"
mount --bind /dev "$4/dev"
mount -t proc proc "$4/proc"
export LISTEN_FDS=1 LISTEN_PID=$$
exec chroot "$4" "$2" --foreground "$3" --disable-polkit --config ` + rootInstanceDir + `/reader.conf.d
`

// PCSCDDebugEnv names an environment variable: set to 1, it makes every
// StartPCSCD pcscd log at debug level (each command of each client) instead
// of info level (readers, cards, errors). pcscd never logs APDUs here.
const PCSCDDebugEnv = "CARDSHARE_PCSCD_DEBUG"

// Timeouts of the harness.
const (
	// pcscdStartTimeout bounds the wait for a new pcscd to list its readers.
	pcscdStartTimeout = 10 * time.Second
	// pcscdStopTimeout is how long pcscd may take to exit after SIGTERM
	// before it gets SIGKILL.
	pcscdStopTimeout = 5 * time.Second
	// pcscdCardTimeout bounds the wait for pcscd to notice an inserted or removed
	// card; pcscd polls vpcd every 400 ms (PCSCLITE_STATUS_POLL_RATE).
	pcscdCardTimeout = 5 * time.Second
	// pcscdPollInterval is how often the harness asks pcscd about its readers
	// while it waits.
	pcscdPollInterval = 10 * time.Millisecond
	// pcscdProbeTimeout bounds one such question.
	pcscdProbeTimeout = 2 * time.Second
)

// PCSCD is a private instance of the system's real pcscd, with vpcd's two
// readers and no others, serving a socket of its own. Several can run at once.
//
// pcscd runs in its own mount and network namespaces: it gets the socket from
// the harness (systemd socket activation: fd 3, LISTEN_FDS=1), sees a private
// /run, and its vpcd listens on the default ports of a loopback nobody else
// can reach. Cards get in through InsertCard, or DialVPCD for a custom card.
//
// Call the methods from the test's goroutine.
type PCSCD struct {
	// Socket is the path of pcscd's socket. Point PCSCLITE_CSOCK_NAME at it
	// (RunClient does).
	Socket string
	// PID is pcscd's process ID. Restart changes it.
	PID int
	// LogPath is the file that collects pcscd's output (see PCSCDDebugEnv).
	// The harness logs its end when the test fails.
	LogPath string
	// RunDir is what pcscd sees as /run; pcscd writes pcscd/pcscd.pid there.
	RunDir string

	t      testing.TB
	root   string // a Debian root file system to run pcscd from; "" is this system
	dir    string // the instance's files: run, drivers, reader.conf.d, the log
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // card goroutines

	mu    sync.Mutex
	ln    *net.UnixListener // nil after Stop and Kill
	proc  *pcscdProcess     // nil after Stop and Kill
	cards map[*vcard.Card]string
}

// pcscdProcess is one run of pcscd.
type pcscdProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, set before done is closed
}

// StartPCSCD starts a private pcscd for the test and stops it when the test
// ends. It returns once pcscd lists both vpcd readers, empty. It fails the test
// if pcscd or vpcd is missing, or if the test does not run as root on Linux.
func StartPCSCD(t testing.TB) *PCSCD {
	t.Helper()
	return startPCSCD(t, "")
}

// StartPCSCDIn is StartPCSCD for the pcscd of another Debian release,
// installed with vsmartcard-vpcd in the root file system root (a
// debootstrap chroot, as scripts/version-matrix.sh makes them): pcscd runs
// chrooted there, in its namespaces, with --disable-polkit (releases since
// 2.0 are built with polkit, and no polkitd runs).
func StartPCSCDIn(t testing.TB, root string) *PCSCD {
	t.Helper()
	return startPCSCD(t, root)
}

func startPCSCD(t testing.TB, root string) *PCSCD {
	t.Helper()
	if err := checkPCSCDHost(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, f := range []string{pcscdPath, vpcdDriverPath} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatalf("testenv: %v\ntestenv: hint: %s", err, installTestDepsHint)
		}
	}
	p := &PCSCD{t: t, root: root, dir: t.TempDir(), cards: make(map[*vcard.Card]string)}
	if err := p.prepare(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	t.Cleanup(p.cleanup)
	if err := p.listen(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// prepare lays out the instance's files.
func (p *PCSCD) prepare() error {
	if strings.HasPrefix(p.dir, "/run/") {
		return fmt.Errorf("temporary directory %s is under /run, which pcscd's namespace replaces; set TMPDIR elsewhere", p.dir)
	}
	p.LogPath = filepath.Join(p.dir, "pcscd.log")
	p.RunDir = filepath.Join(p.dir, "run")
	for _, d := range []string{"run", "drivers", "reader.conf.d"} {
		if err := os.Mkdir(filepath.Join(p.dir, d), 0o755); err != nil {
			return err
		}
	}
	// The driver directory is hidden from pcscd (see pcscDriversDir), so it
	// loads its own copy of vpcd. A chrooted pcscd loads its root's vpcd,
	// and sees the instance's directory at rootInstanceDir.
	driver := filepath.Join(p.dir, "libifdvpcd.so")
	if p.root == "" {
		if err := copyVPCDDriver(driver, vpcdDriverPath); err != nil {
			return err
		}
	} else {
		driver = vpcdDriverPath
		if err := os.MkdirAll(filepath.Join(p.root, rootInstanceDir), 0o755); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(pcscdReaderConf, driver)
	if err := os.WriteFile(filepath.Join(p.dir, "reader.conf.d", "vpcd"), []byte(conf), 0o644); err != nil {
		return err
	}

	// sun_path holds 108 bytes, too few for t.TempDir under a long test name.
	sockDir, err := os.MkdirTemp("", "cs")
	if err != nil {
		return err
	}
	p.t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		return err
	}
	p.Socket = filepath.Join(sockDir, "pcscd.comm")
	return nil
}

// listen creates pcscd's socket, as systemd's pcscd.socket would.
func (p *PCSCD) listen() error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen for pcscd: %w", err)
	}
	// pcscd.socket has SocketMode=0666: clients of any user may connect.
	if err := os.Chmod(p.Socket, 0o666); err != nil {
		ln.Close()
		return err
	}
	p.ln = ln
	return nil
}

// start runs pcscd on p.ln and waits until it lists its readers.
func (p *PCSCD) start() error {
	lnFile, err := p.ln.File()
	if err != nil {
		return fmt.Errorf("pass socket to pcscd: %w", err)
	}
	defer lnFile.Close()
	logFile, err := os.OpenFile(p.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "---- testenv: starting %s ----\n", pcscdPath)

	level := "--info"
	if os.Getenv(PCSCDDebugEnv) == "1" {
		level = "--debug"
	}
	cmd := exec.Command("/bin/sh", "-c", pcscdScript, "sh", p.dir, pcscdPath, level)
	if p.root != "" {
		cmd = exec.Command("/bin/sh", "-c", pcscdRootScript, "sh", p.dir, pcscdPath, level, p.root)
	}
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3 = SD_LISTEN_FDS_START
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = pcscdSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pcscd: %w", err)
	}
	proc := &pcscdProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		close(proc.done)
	}()
	p.proc, p.PID = proc, cmd.Process.Pid

	err = p.waitReaders(pcscdStartTimeout, "pcscd to list its readers", func(rs []readerRecord) bool {
		for _, name := range vpcdReaders {
			if !slices.ContainsFunc(rs, func(r readerRecord) bool { return r.name == name }) {
				return false
			}
		}
		return true
	})
	if err != nil {
		p.stopProcess(syscall.SIGKILL)
		return err
	}
	return nil
}

// waitReaders asks pcscd for its readers until ok accepts them.
func (p *PCSCD) waitReaders(timeout time.Duration, what string, ok func([]readerRecord) bool) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	proc := p.proc
	if proc == nil {
		return fmt.Errorf("waiting for %s: pcscd is stopped", what)
	}
	// A probe sent to a pcscd that just died would wait in the listen
	// queue until pcscdProbeTimeout; cut it short.
	go func() {
		select {
		case <-proc.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	tick := time.NewTicker(pcscdPollInterval)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, pcscdProbeTimeout)
		rs, err := readReaderStates(pctx, p.Socket)
		pcancel()
		if err == nil && ok(rs) {
			return nil
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
		}
		select {
		case <-proc.done:
			return fmt.Errorf("waiting for %s: pcscd (pid %d) exited: %v", what, proc.cmd.Process.Pid, proc.err)
		default:
		}
		if err != nil {
			return fmt.Errorf("timed out after %v waiting for %s; last error: %w", timeout, what, err)
		}
		return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
	}
}

// waitReader asks pcscd about reader until ok accepts its record, and
// returns that record.
func (p *PCSCD) waitReader(reader string, timeout time.Duration, what string, ok func(readerRecord) bool) (readerRecord, error) {
	var rec readerRecord
	err := p.waitReaders(timeout, what, func(rs []readerRecord) bool {
		i := slices.IndexFunc(rs, func(r readerRecord) bool { return r.name == reader })
		if i < 0 {
			return false
		}
		rec = rs[i]
		return ok(rec)
	})
	return rec, err
}

func readerEmpty(r readerRecord) bool { return r.state&scardAbsent != 0 }

// InsertCard puts a new hello-world card (vcard) into VPCDReader and returns
// once pcscd reports it present. Remove it with RemoveCard or the card's
// Close; the test's end removes it too.
func (p *PCSCD) InsertCard(t testing.TB) *vcard.Card {
	t.Helper()
	return p.InsertCardIn(t, VPCDReader)
}

// InsertCardIn is InsertCard for either of vpcd's readers. A reader holds one
// card at a time: if pcscd still sees a card in reader, InsertCardIn waits
// for it to notice the removal, and fails if the card stays.
func (p *PCSCD) InsertCardIn(t testing.TB, reader string) *vcard.Card {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	// pcscd polls vpcd every 400 ms: a card swapped between two polls goes
	// unnoticed. So a card closed just before must be seen gone first.
	before, err := p.waitReader(reader, pcscdCardTimeout, reader+" to be empty (remove its card first)", readerEmpty)
	if err != nil {
		t.Fatalf("testenv: insert card: %v", err)
	}
	conn, err := p.dialVPCD(reader)
	if err != nil {
		t.Fatalf("testenv: insert card: %v", err)
	}
	card, err := vcard.New(conn)
	if err != nil {
		conn.Close()
		t.Fatalf("testenv: insert card: %v", err)
	}
	p.cards[card] = reader
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := card.Serve(p.ctx)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
			p.t.Logf("testenv: card in %s: %v", reader, err)
		}
	}()
	_, err = p.waitReader(reader, pcscdCardTimeout, "the card in "+reader, func(r readerRecord) bool {
		return r.events != before.events && r.state&scardPresent != 0
	})
	if err != nil {
		t.Fatalf("testenv: insert card: %v", err)
	}
	return card
}

// RemoveCard takes a card that InsertCard returned out of its reader and
// returns once pcscd reports the reader empty.
func (p *PCSCD) RemoveCard(t testing.TB, card *vcard.Card) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	reader, ok := p.cards[card]
	if !ok {
		t.Fatal("testenv: RemoveCard: the card is not from InsertCard, or was removed already")
	}
	delete(p.cards, card)
	card.Close()
	_, err := p.waitReader(reader, pcscdCardTimeout, "the removal from "+reader, readerEmpty)
	if err != nil {
		t.Fatalf("testenv: remove card: %v", err)
	}
}

// DialVPCD connects to vpcd's listener for reader, for a card other than
// vcard's hello-world: whoever talks on the connection is the card. vpcd
// listens on 127.0.0.1 of pcscd's private network namespace (ports 35963 and
// 35964), which only this method reaches.
func (p *PCSCD) DialVPCD(reader string) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialVPCD(reader)
}

func (p *PCSCD) dialVPCD(reader string) (*net.TCPConn, error) {
	slot := slices.Index(vpcdReaders, reader)
	if slot < 0 {
		return nil, fmt.Errorf("no vpcd reader %q; there are %q", reader, vpcdReaders)
	}
	if p.proc == nil {
		return nil, errors.New("dial vpcd: pcscd is stopped")
	}
	conn, err := dialInNetns(p.PID, vcard.DefaultPort+slot)
	if err != nil {
		return nil, fmt.Errorf("dial vpcd for %s: %w", reader, err)
	}
	return conn, nil
}

// Stop stops pcscd (SIGTERM, then SIGKILL after 5 s) and removes its socket,
// so clients get "Service not available". Cards in its readers end. Stop
// returns after pcscd's process is gone; it does nothing when stopped already.
func (p *PCSCD) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopProcess(syscall.SIGTERM)
	p.closeListener()
}

// Kill is Stop with SIGKILL: pcscd gets no chance to clean up, as in a crash.
func (p *PCSCD) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopProcess(syscall.SIGKILL)
	p.closeListener()
}

// Restart stops pcscd if it runs and starts a new one on the same socket
// path, with empty readers: insert cards again. While it restarts the socket
// stays, as with systemd's pcscd.socket, so clients that connect meanwhile
// wait for the new pcscd instead of failing; connections to the old one end.
func (p *PCSCD) Restart(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopProcess(syscall.SIGTERM)
	if p.ln == nil {
		if err := p.listen(); err != nil {
			t.Fatalf("testenv: restart pcscd: %v", err)
		}
	}
	if err := p.start(); err != nil {
		t.Fatalf("testenv: restart pcscd: %v", err)
	}
}

// stopProcess ends pcscd with sig and waits for it to be reaped.
func (p *PCSCD) stopProcess(sig syscall.Signal) {
	proc := p.proc
	if proc == nil {
		return
	}
	p.proc = nil
	select {
	case <-proc.done:
		return
	default:
	}
	proc.cmd.Process.Signal(sig)
	select {
	case <-proc.done:
	case <-time.After(pcscdStopTimeout):
		p.t.Logf("testenv: pcscd (pid %d) ignored %v for %v; killing it", p.PID, sig, pcscdStopTimeout)
		proc.cmd.Process.Kill()
		<-proc.done
	}
}

func (p *PCSCD) closeListener() {
	if p.ln != nil {
		p.ln.Close() // also removes the socket file
		p.ln = nil
	}
}

// cleanup ends everything StartPCSCD started.
func (p *PCSCD) cleanup() {
	p.mu.Lock()
	if proc := p.proc; proc != nil {
		select {
		case <-proc.done:
			p.t.Errorf("testenv: pcscd (pid %d) exited during the test: %v", proc.cmd.Process.Pid, proc.err)
		default:
		}
	}
	p.stopProcess(syscall.SIGTERM)
	p.closeListener()
	for card := range p.cards {
		card.Close()
	}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if p.t.Failed() {
		p.t.Logf("testenv: pcscd output (%s), last lines:\n%s", p.LogPath, pcscdLogTail(p.LogPath, 200))
	}
}

// pcscdLogTail returns the last n lines of a file.
func pcscdLogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func copyVPCDDriver(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
