//go:build linux

package bench

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// BenchmarkNative compares the native backend (internal/nativepcsc over
// the real libpcsclite, served by bridge.Serve through Source.Dial) with
// the socket backend (bridge.Serve to the pcscd socket) and with the
// client talking to pcscd directly, in rounds, round-robin, and prints the
// APDU rates as same-run ratios. It then holds -idle guest connections
// open on the native backend, each with a context and a registered wait,
// and prints what one costs.
//
//	go test -run '^$' -bench Native -benchtime 1x ./internal/bench -args -rounds=5 -apdus=3000
func BenchmarkNative(b *testing.B) {
	p := testenv.StartPCSCD(b)
	p.InsertCard(b)
	dir := sockDir(b)
	bin := filepath.Join(dir, "hostserve")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/hostserve").CombinedOutput(); err != nil {
		b.Fatalf("bench: build hostserve: %v\n%s", err, out)
	}
	socketPID, socketPath := startHostServe(b, bin, "socket", p.Socket)
	nativePID, nativePath := startHostServe(b, bin, "native", p.Socket)
	paths := []*path{
		{id: "direct", socket: p.Socket, apdus: *flagAPDUs},
		{id: "socket", socket: socketPath, pid: socketPID, apdus: *flagAPDUs},
		{id: "native", socket: nativePath, pid: nativePID, apdus: *flagAPDUs},
	}
	client := testenv.BuildClient(b)
	if *flagWarmup > 0 {
		for _, pt := range paths {
			runBench(b, client, pt, *flagWarmup)
		}
	}
	for range *flagRounds {
		for _, pt := range paths {
			pt.runs = append(pt.runs, runBench(b, client, pt, pt.apdus))
		}
	}
	direct, socket := summarize(paths[0].runs), summarize(paths[1].runs)
	var t strings.Builder
	fmt.Fprintf(&t, "\n| path | APDU/s | × direct | × socket backend | median µs | p99 µs | max µs | over 10 ms | host CPU µs/APDU |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, pt := range paths {
		s := summarize(pt.runs)
		cpu := "—"
		if pt.pid != 0 && s.count > 0 {
			cpu = fmt.Sprintf("%.1f", float64(pt.proc.cpu.Microseconds())/float64(s.count))
		}
		fmt.Fprintf(&t, "| %s | %.0f | %s | %s | %.0f | %.0f | %.0f | %d | %s |\n", pt.id, s.perSec,
			formatRatio(s.perSec/direct.perSec), formatRatio(s.perSec/socket.perSec), s.medianUS, s.p99US, s.maxUS, s.over10, cpu)
		b.ReportMetric(s.perSec, pt.id+"-APDU/s")
	}
	nat := summarize(paths[2].runs)
	fmt.Fprintf(&t, "\nnative ÷ socket backend: %.3f× APDU/s (%d rounds of %d APDUs)\n", nat.perSec/socket.perSec, *flagRounds, *flagAPDUs)
	b.ReportMetric(nat.perSec/socket.perSec, "native-x-socket")
	t.WriteString(idleCost(b, p.Socket))
	fmt.Println(t.String())
	b.ReportMetric(0, "ns/op")
}

var flagIdle = flag.Int("idle", 100, "idle guest connections held open on the native backend by BenchmarkNative")

// idleCost opens -idle connections through Source.Dial, each with a
// version, a context and a registered wait (what pcsc_scan or scdaemon
// leave open), and reports the heap, stacks and RSS they add.
func idleCost(b *testing.B, pcscd string) string {
	scardtest.UseSocket(b, pcscd)
	lib, err := scard.Open()
	if err != nil {
		b.Fatal(err)
	}
	src, err := nativepcsc.New(lib, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	n := *flagIdle
	runtime.GC()
	m0, rss0 := memStats()
	var conns []net.Conn
	for range n {
		c, err := src.Dial(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(pcsc.AppendVersionRequest(nil, pcsc.V45))
		var vb [12]byte
		if r, err := pcsc.ReadVersionReply(c, &vb); err != nil || !r.Accepted() {
			b.Fatalf("version: %+v %v", r, err)
		}
		req := []byte{12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x13, 0, 0, 0}
		c.Write(req)
		buf := make([]byte, 12+pcsc.DefaultSlots*pcsc.ReaderStateSize)
		if _, err := readFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	m1, rss1 := memStats()
	for _, c := range conns {
		c.Close()
	}
	perConn := float64(m1-m0) / float64(n)
	return fmt.Sprintf("idle guest connections on the native backend: %d cost %.1f KiB each in Go heap and stacks (both socket ends and the serving goroutine), RSS %+.1f MiB in all\n",
		n, perConn/1024, (float64(rss1)-float64(rss0))/(1<<20))
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// memStats returns heap in use plus stacks, and the process's RSS.
func memStats() (uint64, uint64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	var rss uint64
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			rss = pages * uint64(os.Getpagesize())
		}
	}
	return m.HeapInuse + m.StackInuse, rss
}

// startHostServe runs testdata/hostserve with backend until the benchmark
// ends, and returns its PID and guest socket. Each backend runs in a
// process of its own, as `cardshare expose` would, apart from the
// virtual card in this process.
func startHostServe(b *testing.B, bin, backend, pcscd string) (int, string) {
	b.Helper()
	socket := filepath.Join(sockDir(b), backend+".comm")
	cmd := exec.Command(bin, "-backend", backend, socket, pcscd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "serving") {
		if time.Now().After(deadline) {
			b.Fatalf("bench: hostserve -backend %s: %s", backend, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd.Process.Pid, socket
}
