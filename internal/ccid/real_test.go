//go:build linux

package ccid

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/vscard"
)

// realHost is the host's real libpcsclite (through internal/scard) talking
// to the test's private pcscd.
func realHost(t *testing.T, p *testenv.PCSCD) Host {
	t.Helper()
	scardtest.UseSocket(t, p.Socket)
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	return NewSCardHost(lib)
}

// waitPresent waits until pcscd shows a card in reader with the given ATR.
func waitPresent(t *testing.T, host Host, reader string, atr []byte) {
	t.Helper()
	hc, err := host.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Release()
	st := []ReaderState{{Reader: reader}}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		hc.GetStatusChange(time.Second, st)
		if st[0].EventState&StatePresent != 0 && bytes.Equal(st[0].ATR, atr) {
			return
		}
		st[0].CurrentState = st[0].EventState &^ StateChanged
	}
	t.Fatalf("no card with ATR % x in %s", atr, reader)
}

// insertT1Card puts the T=1-only card into vpcd's second reader.
func insertT1Card(t *testing.T, p *testenv.PCSCD, host Host) {
	t.Helper()
	conn, err := p.DialVPCD(testenv.VPCDSecondReader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); serveVPCDCard(ctx, conn, atrT1Only) }()
	t.Cleanup(func() { cancel(); <-done })
	waitPresent(t, host, testenv.VPCDSecondReader, atrT1Only)
}

// TestRealPCSCD runs the bridge on the real pcscd, vpcd and libpcsclite of
// the host with a fake QEMU: the project's test card, the T=1-only card,
// a removal, a reset by a host program, and a host program's transaction
// between two bursts of guest commands.
func TestRealPCSCD(t *testing.T) {
	// Restored by the first cleanup, which runs last: after the bridge's
	// own cleanup has stopped the goroutines that read it.
	old := statusWait
	t.Cleanup(func() { statusWait = old })
	statusWait = 50 * time.Millisecond
	p := testenv.StartPCSCD(t)
	card := p.InsertCard(t)
	host := realHost(t, p)
	insertT1Card(t, p, host)
	epA, acceptA := qemuServer(t)
	epB, acceptB := qemuServer(t)
	startBridge(t, host, &Config{Reader: "Virtual PCD*", Chardevs: []Endpoint{epA, epB}, RemovalGap: 300 * time.Millisecond})
	qa, qb := acceptA(), acceptB()

	if name := qa.expect(vscard.ReaderAdd); string(name) != testenv.VPCDReader {
		t.Fatalf("chardev A got %q", name)
	}
	if atr := qa.expect(vscard.ATR); !bytes.Equal(atr, atrT0) {
		t.Fatalf("test card ATR % x", atr)
	}
	qa.transmit(selectHello)
	if got := qa.transmit(hello); !bytes.Equal(got, helloResp) {
		t.Fatalf("hello: % x", got)
	}
	// Quiet readers (GetStatusChange timing out, every 50 ms here) change
	// nothing for the guest.
	qa.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if m, err := qa.r.Next(); err == nil {
		t.Fatalf("quiet host: got %v", m.Type)
	}

	// The T=1-only card: T=0 in its ATR, 61xx and GET RESPONSE.
	qb.expect(vscard.ReaderAdd)
	if atr := qb.expect(vscard.ATR); !bytes.Equal(atr[:4], []byte{0x3b, 0x89, 0x80, 0x01}) {
		t.Fatalf("T=1 card's guest ATR % x", atr)
	}
	if got := qb.transmit(hello); !bytes.Equal(got, []byte{0x61, 12}) {
		t.Fatalf("hello on T=1 card: % x", got)
	}
	if got := qb.transmit([]byte{0, 0xc0, 0, 0, 12}); !bytes.Equal(got, helloResp) {
		t.Fatalf("GET RESPONSE: % x", got)
	}

	// A host program resets the card: the guest sees removal, insertion.
	lib, _ := scard.Open()
	hctx, err := lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.ReleaseContext(hctx)
	h, _, err := lib.Connect(hctx, testenv.VPCDReader, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lib.Reconnect(h, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1, scard.DispositionReset); err != nil {
		t.Fatal(err)
	}
	lib.Disconnect(h, scard.DispositionLeave)
	qa.send(vscard.APDU, hello)
	qa.expect(vscard.Error)
	qa.expect(vscard.CardRemove)
	qa.expect(vscard.ATR)
	if got := qa.transmit(hello); !bytes.Equal(got, []byte{0x69, 0x85}) {
		t.Fatalf("hello after the reset (applet deselected): % x", got)
	}

	// Removal on the host.
	p.RemoveCard(t, card)
	qa.expect(vscard.CardRemove)
}

// bridgeBench runs n hello round trips through the bridge over the real
// pcscd with a fake QEMU: the VSCard hop without the guest.
func bridgeBench(t *testing.T, host Host, reader string, n int) testenv.Bench {
	ep, accept := qemuServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Attach(ctx, host, &Config{Reader: reader, Chardevs: []Endpoint{ep}})
	}()
	defer func() { cancel(); <-done }()
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit(selectHello)
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if got := q.transmit(hello); !bytes.Equal(got, helloResp) {
			t.Fatalf("hello: % x", got)
		}
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	b := testenv.Bench{Count: n, MedianUS: us(lat[(n-1)/2]), P99US: us(lat[(n*99+99)/100-1]), MaxUS: us(lat[n-1]),
		PerSec: float64(n) / total.Seconds()}
	for _, l := range lat {
		if l > 10*time.Millisecond {
			b.Over10ms++
		}
	}
	return b
}

// buildTestDisk makes the guest's test disk: guestclient (built here
// against Debian 12's libpcsclite, the guest's too) and run.sh.
func buildTestDisk(t *testing.T, work string) string {
	t.Helper()
	src := filepath.Join(work, "disk")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("gcc", "-O2", "-Wall", "-o", filepath.Join(src, "guestclient"), "testdata/guestclient.c",
		"-I/usr/include/PCSC", "-lpcsclite")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guestclient: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(src, "run.sh"), []byte(guestScript), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(work, "test.ext4")
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext4", "-d", src, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return img
}

var guestBenchRE = regexp.MustCompile(`bench: count=(\d+) median_us=([\d.]+) p99_us=([\d.]+) max_us=([\d.]+) apdu_per_s=(\d+) over_10ms=(\d+)`)

// benchTable prints the same-run comparison: the card on the host, over the
// bridge without the guest, and in the guest.
func benchTable(t *testing.T, hostB, hopB testenv.Bench, console string) {
	rows := []struct {
		name string
		b    testenv.Bench
	}{{"host: pcscclient → pcscd → vpcd → card", hostB}, {"bridge: fake QEMU → VSCard → bridge → pcscd", hopB}}
	names := []string{"guest: test card (guest pcscd → libccid → xhci → usb-ccid → VSCard → bridge → host)",
		"guest: T=1-only card (each hello = APDU + GET RESPONSE)", "guest: test card again"}
	for i, m := range guestBenchRE.FindAllStringSubmatch(console, -1) {
		f := func(j int) float64 { v, _ := strconv.ParseFloat(m[j], 64); return v }
		name := fmt.Sprintf("guest %d", i)
		if i < len(names) {
			name = names[i]
		}
		rows = append(rows, struct {
			name string
			b    testenv.Bench
		}{name, testenv.Bench{Count: int(f(1)), MedianUS: f(2), P99US: f(3), MaxUS: f(4), PerSec: f(5), Over10ms: int(f(6))}})
	}
	if m := regexp.MustCompile(`status: count=\d+ mean_us=([\d.]+) max_us=([\d.]+)`).FindStringSubmatch(console); m != nil {
		defer fmt.Printf("guest: SCardStatus alone (guest client ↔ guest pcscd, no USB): mean %s µs, max %s µs\n", m[1], m[2])
	}
	fmt.Printf("\n%-86s %8s %10s %10s %10s %6s\n", "path", "APDU/s", "median µs", "p99 µs", "max µs", ">10ms")
	for _, r := range rows {
		fmt.Printf("%-86s %8.0f %10.0f %10.0f %10.0f %6d\n", r.name, r.b.PerSec, r.b.MedianUS, r.b.P99US, r.b.MaxUS, r.b.Over10ms)
	}
}
