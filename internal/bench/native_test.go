//go:build linux

package bench

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// BenchmarkNative compares the native backend (internal/nativepcsc over
// the real libpcsclite) with the socket backend (bridge.Serve to the pcscd
// socket) and with the client talking to pcscd directly, each host side a
// process of its own (testdata/hostserve): "native" is bridge.Serve handing
// each guest connection to the native Source (bridge.Config.Local), as
// cardshare does; "native-pair" is bridge.Serve piping it to the Source's
// Dial, a socket pair, as cardshare did before Local. Rounds are
// interleaved, each starting with another path, and it prints the APDU
// rates as same-run ratios, overall and round by round, with the load
// average. It then holds -idle guest connections open on each host side,
// each with a context and a registered wait, and prints what one costs
// that process (heap and stacks after a GC, and RSS).
//
//	go test -run '^$' -bench Native -benchtime 1x ./internal/bench -args -rounds=5 -apdus=3000
func BenchmarkNative(b *testing.B) {
	p := testenv.StartPCSCD(b)
	p.InsertCard(b).SetDelay(*flagCardDelay)
	dir := sockDir(b)
	bin := filepath.Join(dir, "hostserve")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/hostserve").CombinedOutput(); err != nil {
		b.Fatalf("bench: build hostserve: %v\n%s", err, out)
	}
	servers := []*hostServe{
		startHostServe(b, bin, "socket", p.Socket),
		startHostServe(b, bin, "native", p.Socket),
		startHostServe(b, bin, "native-pair", p.Socket),
	}
	paths := []*path{{id: "direct", socket: p.Socket, apdus: *flagAPDUs}}
	for _, hs := range servers {
		paths = append(paths, &path{id: hs.backend, socket: hs.socket, pid: hs.pid, apdus: *flagAPDUs})
	}
	client := testenv.BuildClient(b)
	if *flagWarmup > 0 {
		for _, pt := range paths {
			runBench(b, client, pt, *flagWarmup)
		}
	}
	for _, pt := range paths {
		pt.proc = procUse{}
	}
	var loads []string
	for r := range *flagRounds {
		loads = append(loads, loadAvg())
		for i := range paths {
			pt := paths[(r+i)%len(paths)]
			pt.runs = append(pt.runs, runBench(b, client, pt, pt.apdus))
		}
	}
	loads = append(loads, loadAvg())
	direct, socket := summarize(paths[0].runs), summarize(paths[1].runs)
	var t strings.Builder
	fmt.Fprintf(&t, "\n%d rounds of %d APDUs, interleaved; %s; 1-minute load average before each round and after: %s\n",
		*flagRounds, *flagAPDUs, cardDelayNote(*flagCardDelay), strings.Join(loads, " "))
	fmt.Fprintf(&t, "\n| path | APDU/s | × direct | × socket backend | median µs | p99 µs | max µs | over 10 ms | host CPU µs/APDU | APDU/s by round |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, pt := range paths {
		s := summarize(pt.runs)
		cpu := "—"
		if pt.pid != 0 && s.count > 0 {
			cpu = fmt.Sprintf("%.1f", float64(pt.proc.cpu.Microseconds())/float64(s.count))
		}
		var rounds []string
		for _, r := range pt.runs {
			rounds = append(rounds, fmt.Sprintf("%.0f", r.PerSec))
		}
		fmt.Fprintf(&t, "| %s | %.0f | %s | %s | %.0f | %.0f | %.0f | %d | %s | %s |\n", pt.id, s.perSec,
			formatRatio(s.perSec/direct.perSec), formatRatio(s.perSec/socket.perSec), s.medianUS, s.p99US, s.maxUS, s.over10, cpu, strings.Join(rounds, " "))
		b.ReportMetric(s.perSec, pt.id+"-APDU/s")
	}
	nat, pair := summarize(paths[2].runs), summarize(paths[3].runs)
	fmt.Fprintf(&t, "\nnative ÷ socket backend: %.3f× APDU/s; %s\n", nat.perSec/socket.perSec, roundRatios(paths[2].runs, paths[1].runs))
	fmt.Fprintf(&t, "native ÷ native-pair (the socket pair it replaced): %.3f× APDU/s; %s\n", nat.perSec/pair.perSec, roundRatios(paths[2].runs, paths[3].runs))
	b.ReportMetric(nat.perSec/socket.perSec, "native-x-socket")
	b.ReportMetric(nat.perSec/pair.perSec, "native-x-pair")
	t.WriteString("\nidle guest connections, each with a context and a registered wait (what pcsc_scan or scdaemon leave open), cost the host-side process:\n")
	for _, hs := range servers {
		t.WriteString(idleCost(b, hs, *flagIdle))
	}
	fmt.Println(t.String())
	b.ReportMetric(0, "ns/op")
}

var flagIdle = flag.Int("idle", 100, "idle guest connections held open on each host side by BenchmarkNative")

// loadAvg is the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// idleCost opens n guest connections to hs, each with a version, a
// context and a registered wait, and returns a line with what they add to
// its heap and stacks and to its RSS.
func idleCost(b *testing.B, hs *hostServe, n int) string {
	heap0, rss0 := hs.mem(b)
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", hs.socket)
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
		// SCARD_ESTABLISH_CONTEXT (scope system), then
		// CMD_WAIT_READER_STATE_CHANGE, whose reply to a 4.5 client is
		// the 16-record reader array.
		req := []byte{12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x13, 0, 0, 0}
		c.Write(req)
		buf := make([]byte, 12+pcsc.DefaultSlots*pcsc.ReaderStateSize)
		if _, err := readFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	heap1, rss1 := hs.mem(b)
	for _, c := range conns {
		c.Close()
	}
	line := fmt.Sprintf("- %s: %d connections, %.1f KiB each in Go heap and stacks, %.1f KiB each in RSS; RSS %.1f MiB with them\n",
		hs.backend, n, (float64(heap1)-float64(heap0))/float64(n)/1024, (float64(rss1)-float64(rss0))/float64(n)/1024, float64(rss1)/(1<<20))
	b.ReportMetric((float64(heap1)-float64(heap0))/float64(n)/1024, hs.backend+"-idle-KiB/conn")
	return line
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

// hostServe is a testdata/hostserve process.
type hostServe struct {
	backend, socket string
	pid             int
	stdin           io.Writer
	out             *logtest.Buffer
}

// mem asks hs for its heap and stacks in use after a GC and its RSS.
func (hs *hostServe) mem(b *testing.B) (heap, rss uint64) {
	b.Helper()
	n := strings.Count(hs.out.String(), "mem ")
	if _, err := io.WriteString(hs.stdin, "mem\n"); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := hs.out.String()
		if strings.Count(out, "mem ") > n {
			line := out[strings.LastIndex(out, "mem "):]
			line, _, _ = strings.Cut(line, "\n")
			if _, err := fmt.Sscanf(line, "mem %d %d", &heap, &rss); err == nil {
				return heap, rss
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: hostserve -backend %s: no mem line: %s", hs.backend, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startHostServe runs testdata/hostserve with backend until the benchmark
// ends. Each backend runs in a process of its own, as `cardshare expose`
// would, apart from the virtual card in this process.
func startHostServe(b *testing.B, bin, backend, pcscd string) *hostServe {
	b.Helper()
	socket := filepath.Join(sockDir(b), backend+".comm")
	cmd := exec.Command(bin, "-backend", backend, socket, pcscd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out := new(logtest.Buffer)
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
	return &hostServe{backend: backend, socket: socket, pid: cmd.Process.Pid, stdin: stdin, out: out}
}
