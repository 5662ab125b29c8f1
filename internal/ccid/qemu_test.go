//go:build linux

package ccid

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// TestQEMUGuest boots a real QEMU guest (scripts/qemu-ccid.sh) with two
// usb-ccid readers behind the bridge, one chardev dialed by the bridge and
// one QEMU dials, and checks what the guest's own pcscd and libccid see.
// It also measures APDU round trips in the guest against the same card on
// the host and over the bridge without the guest.
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
	timed := &timingHost{Host: host}

	work := sockDir(t)
	disk := buildTestDisk(t, work)
	// Chardev A is TCP on loopback (QEMU listens, nodelay=on), B a Unix
	// socket the bridge listens on.
	portA := freePort(t)
	sockB := filepath.Join(work, "ccid1.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := &Config{
		Reader:   "Virtual PCD*",
		Chardevs: []Endpoint{{Network: "tcp", Address: "127.0.0.1:" + portA}, {Network: "unix", Address: sockB, Listen: true}},
		Logger:   testLogger(t),
	}
	// A third reader shows the T=1-only card as it is (Config.T1), to
	// see what QEMU 7.2's guest makes of it.
	sockC := filepath.Join(work, "ccid2.sock")
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		err := Attach(ctx, timed, &Config{Reader: testenv.VPCDSecondReader, T1: true, Logger: testLogger(t),
			Chardevs: []Endpoint{{Network: "unix", Address: sockC, Listen: true}}})
		if err != nil && ctx.Err() == nil {
			t.Errorf("Attach with T1: %v", err)
		}
	})
	wg.Go(func() {
		if err := Attach(ctx, timed, cfg); err != nil && ctx.Err() == nil {
			t.Errorf("Attach: %v", err)
		}
	})

	accel := os.Getenv("CARDSHARE_QEMU_ACCEL")
	if accel == "" {
		accel = "tcg"
	}
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
	fmt.Println(timed.summary())
}

// timingHost times the host card's Transmit calls, to tell the bridge's
// and the card's share of the guest's round trips from QEMU's and the
// guest's.
type timingHost struct {
	Host
	mu sync.Mutex
	d  map[string][]time.Duration // by reader
}

func (h *timingHost) EstablishContext() (HostContext, error) {
	c, err := h.Host.EstablishContext()
	return timingContext{c, h}, err
}

type timingContext struct {
	HostContext
	h *timingHost
}

func (c timingContext) Connect(reader string, exclusive bool) (HostCard, error) {
	card, err := c.HostContext.Connect(reader, exclusive)
	return timingCard{card, c.h, reader}, err
}

type timingCard struct {
	HostCard
	h      *timingHost
	reader string
}

func (c timingCard) Transmit(apdu, recv []byte) (int, error) {
	t0 := time.Now()
	n, err := c.HostCard.Transmit(apdu, recv)
	c.h.mu.Lock()
	if c.h.d == nil {
		c.h.d = map[string][]time.Duration{}
	}
	c.h.d[c.reader] = append(c.h.d[c.reader], time.Since(t0))
	c.h.mu.Unlock()
	return n, err
}

func (h *timingHost) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, reader := range slices.Sorted(maps.Keys(h.d)) {
		d := slices.Clone(h.d[reader])
		slices.Sort(d)
		over := 0
		for _, x := range d {
			if x > 10*time.Millisecond {
				over++
			}
		}
		fmt.Fprintf(&b, "SCardTransmit on the host inside the bridge during the guest run, %s: %d calls, median %d µs, p99 %d µs, max %d µs, %d over 10 ms\n",
			reader, len(d), d[(len(d)-1)/2].Microseconds(), d[(len(d)*99+99)/100-1].Microseconds(), d[len(d)-1].Microseconds(), over)
	}
	return b.String()
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
