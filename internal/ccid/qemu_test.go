//go:build linux

package ccid

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/testenv"
)

// guestEnv names the directory scripts/qemu-ccid-image.sh made (vmlinuz,
// initrd.img, rootfs.ext4). TestQEMUGuest runs only when it is set:
// scripts/qemu-ccid.sh sets it.
const guestEnv = "CARDSHARE_QEMU_GUEST"

// guestScript runs in the guest (its init calls /test/run.sh). The first
// emulated reader (" 00 00" in libccid's naming) is bound to vpcd's first
// reader with the project's test card, the second (" 01 00") to vpcd's
// second reader with a T=1-only card.
const guestScript = `#!/bin/sh
C=/test/guestclient
A=" 00 00"
B=" 01 00"
echo "guest: readers (pcsc_scan -r):"
timeout 20 pcsc_scan -r 2>&1 | sed 's/^/guest:   /'
$C "$A" hello
$C "$B" hello
echo "guest: the T=1-only card with its own ATR (what --t1 does; QEMU 7.2 offers T=0 only):"
$C " 02 00" hello
$C "$A" status 300
$C "$A" bench 300
$C "$B" bench 300
$C "$A" bench 300
$C "$B" reset
for n in 256 368 376 600 2040; do $C "$B" resp $n; done
for n in 261 1000 4096 65526; do $C "$B" cmd $n; done
echo "guest: remove the card now"
$C "$A" waitremove 30
$C "$B" cmd 65527
`

// TestQEMUGuest boots a real QEMU guest (scripts/qemu-ccid.sh) with three
// usb-ccid readers served by `cardshare qemu attach` processes, built from
// ./cmd/cardshare: one dials QEMU's TCP chardev, two listen on Unix sockets
// QEMU dials (one of them with --t1). It checks what the guest's own pcscd
// and libccid see, and measures APDU round trips in the guest against the
// same card on the host and over the bridge without the guest.
func TestQEMUGuest(t *testing.T) {
	dir := os.Getenv(guestEnv)
	if dir == "" {
		t.Skipf("set %s (scripts/qemu-ccid.sh does)", guestEnv)
	}
	n := 300
	p := testenv.StartPCSCD(t)
	card := p.InsertCard(t)
	host := realHost(t, p)
	insertT1Card(t, p, host)
	// The same card on the host, and over the bridge without the guest.
	out, err := testenv.RunClient(t, testenv.BuildClient(t), p.Socket, "-r", testenv.VPCDReader, "bench", strconv.Itoa(n))
	if err != nil {
		t.Fatalf("host bench: %v\n%s", err, out)
	}
	hostB, err := testenv.ParseBench(out)
	if err != nil {
		t.Fatal(err)
	}
	hopB := bridgeBench(t, host, testenv.VPCDReader, n)

	work := sockDir(t)
	disk := buildTestDisk(t, work)
	bin := buildCardshare(t, work)
	// Chardev A is TCP on loopback (QEMU listens, nodelay=on) with the test
	// card, B a Unix socket cardshare listens on with the T=1-only card,
	// and C another with the same card as it is (--t1), to see what QEMU
	// 7.2's guest makes of a T=1-only ATR.
	portA := freePort(t)
	sockB := filepath.Join(work, "ccid1.sock")
	sockC := filepath.Join(work, "ccid2.sock")
	attach := []*attachProc{
		startAttach(t, bin, p.Socket, "A", "--chardev", "tcp:127.0.0.1:"+portA, "--reader", testenv.VPCDReader,
			"--control-socket", filepath.Join(work, "ctl", "a.sock")),
		startAttach(t, bin, p.Socket, "B", "--listen", "--chardev", "unix:"+sockB, "--reader", testenv.VPCDSecondReader,
			"--control-socket", filepath.Join(work, "ctl", "b.sock")),
		startAttach(t, bin, p.Socket, "C", "--listen", "--t1", "--chardev", "unix:"+sockC, "--reader", testenv.VPCDSecondReader,
			"--control-socket", filepath.Join(work, "ctl", "c.sock")),
	}

	accel := os.Getenv("CARDSHARE_QEMU_ACCEL")
	if accel == "" {
		accel = "tcg"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35,accel="+accel, "-m", "768", "-smp", "1", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd.img"),
		"-append", "root=/dev/vda rw console=ttyS0 init=/sbin/cardshare-init panic=-1 quiet loglevel=3",
		"-drive", "file="+filepath.Join(dir, "rootfs.ext4")+",if=virtio,format=raw,snapshot=on",
		"-drive", "file="+disk+",if=virtio,format=raw,readonly=on",
		"-device", "qemu-xhci,id=xhci",
		"-device", "usb-ccid,id=ccid0,bus=xhci.0",
		"-chardev", "socket,id=c0,host=127.0.0.1,port="+portA+",server=on,wait=off,nodelay=on",
		"-device", "ccid-card-passthru,chardev=c0,bus=ccid0.0",
		"-device", "usb-ccid,id=ccid1,bus=xhci.0",
		"-chardev", "socket,id=c1,path="+sockB+",reconnect=1",
		"-device", "ccid-card-passthru,chardev=c1,bus=ccid1.0",
		"-device", "usb-ccid,id=ccid2,bus=xhci.0",
		"-chardev", "socket,id=c2,path="+sockC+",reconnect=1",
		"-device", "ccid-card-passthru,chardev=c2,bus=ccid2.0",
	)
	stdout, err := qemu.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	qemu.Stderr = qemu.Stdout
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	timeout := time.AfterFunc(6*time.Minute, func() { qemu.Process.Kill() })
	defer timeout.Stop()
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Printf("serial: %s\n", line) // the script's log shows the console
		lines = append(lines, line)
		if strings.Contains(line, "guest: reset the card now") {
			resetCard(t, testenv.VPCDSecondReader)
		}
		if strings.Contains(line, "guest: remove the card now") {
			p.RemoveCard(t, card)
		}
	}
	qemu.Wait()
	t.Logf("guest ran %s", time.Since(start).Round(time.Second))
	// Each attach served the whole run and stops cleanly on SIGTERM.
	for _, a := range attach {
		a.stop(t)
	}
	console := strings.Join(lines, "\n")
	for _, want := range []string{
		`protocol: T=0\natr: 3B 02 14 50\nresponse: Hello world! sw: 9000`,
		`protocol: T=0\natr: 3B 89 80 01 63 61 72 64 73 68 61 72 65 [0-9A-F]{2}\nresponse: Hello world! sw: 9000`,
		`after reset: .*\nafter reset, connected again: response: Hello world! sw: 9000`,
		`resp 2040: got 2040 bytes sw 9000`,
		`QEMU 7.2 offers T=0 only\):\nguestclient: SCardConnect: Card is unresponsive`,
		`cmd 65526: ok sw 9000`,
		`removed: .* 00 00`,
		`guest: done`,
	} {
		if !regexp.MustCompile(want).MatchString(console) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	benchTable(t, hostB, hopB, console)
}

// buildCardshare builds the cardshare command into dir.
func buildCardshare(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cardshare")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/cardshare/cardshare/cmd/cardshare").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/cardshare: %v\n%s", err, out)
	}
	return bin
}

// attachProc is a `cardshare qemu attach` process of the rig.
type attachProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once waited for, with err
	err  error
}

// startAttach runs `cardshare qemu attach ARGS...` over the test's pcscd;
// its output shows as "attach NAME: ..." lines. A cleanup kills it by PID
// if the test ends before stop.
func startAttach(t *testing.T, bin, pcscd, name string, args ...string) *attachProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"qemu", "attach"}, args...)...)
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+pcscd)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start cardshare qemu attach: %v", err)
	}
	w.Close()
	a := &attachProc{name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Printf("attach %s: %s\n", name, sc.Text())
		}
	}()
	go func() { <-copied; r.Close(); a.err = cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			cmd.Process.Kill()
			<-a.done
		}
	})
	return a
}

// stop fails the test if the process ended early, then stops it with
// SIGTERM and expects a clean exit.
func (a *attachProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
		t.Errorf("cardshare qemu attach %s ended during the run: %v", a.name, a.err)
		return
	default:
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("attach %s: %v", a.name, err)
		return
	}
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("cardshare qemu attach %s after SIGTERM: %v", a.name, a.err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("cardshare qemu attach %s still running 20 s after SIGTERM", a.name)
	}
}

// resetCard resets the card in reader as a host program would
// (SCardReconnect with SCARD_RESET_CARD), waiting for the guest's
// transaction to end.
func resetCard(t *testing.T, reader string) {
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	c, err := lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.ReleaseContext(c)
	h, _, err := lib.Connect(c, reader, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1)
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	defer lib.Disconnect(h, scard.DispositionLeave)
	if _, err := lib.Reconnect(h, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1, scard.DispositionReset); err != nil {
		t.Fatalf("reset: %v", err)
	}
	fmt.Println("host: reset the card in", reader)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
