//go:build linux

package bench

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/testenv"
)

var (
	flagSoakAPDUs = flag.Int("soak-apdus", 1_000_000, "APDUs of BenchmarkSoak through each path")
	flagSoakChunk = flag.Int("soak-chunk", 100_000, "APDUs per client run in BenchmarkSoak; each run is a new pcsc-lite connection")
	flagSoakPaths = flag.String("soak-paths", pathCLI+","+pathCardshare, "comma-separated paths of BenchmarkSoak: "+pathCLI+" (a `cardshare expose` process: RSS, threads, fds) and "+pathCardshare+" (forward.Expose in the test process: goroutines)")
)

// soakPoint is one sample of a soak: the process after n APDUs.
type soakPoint struct {
	apdus      int
	proc       procSample
	goroutines int // in-process path only
}

// BenchmarkSoak sends -soak-apdus APDUs through one guest, in client runs of
// -soak-chunk APDUs (each a new pcsc-lite connection), and samples the
// relay after every run: a leak shows as a figure that grows with the count.
// Every APDU must succeed: the client stops at the first error or wrong
// answer. The cardshare-cli path is a `cardshare expose` process, whose RSS,
// threads and descriptors /proc shows; the cardshare path runs
// forward.Expose in the test process, where goroutines can be counted (its
// RSS includes the test card and the harness).
//
// The benchmark runs once whatever b.N is; run it with -benchtime 1x, or
// scripts/soak.sh.
func BenchmarkSoak(b *testing.B) {
	total, chunk := *flagSoakAPDUs, *flagSoakChunk
	if total < 1 || chunk < 1 {
		b.Fatal("bench: -soak-apdus and -soak-chunk must be positive")
	}
	var ids []string
	for id := range strings.SplitSeq(*flagSoakPaths, ",") {
		if id = strings.TrimSpace(id); id != pathCLI && id != pathCardshare {
			b.Fatalf("bench: -soak-paths: unknown path %q; known: %s, %s", id, pathCLI, pathCardshare)
		}
		ids = append(ids, id)
	}
	p := testenv.StartPCSCD(b)
	p.InsertCard(b)
	bin := testenv.BuildClient(b)
	s := testenv.StartSSHD(b, testenv.SSHDOptions{})
	fmt.Println(machine(b, p, s))

	var t strings.Builder
	fmt.Fprintf(&t, "\n| path | APDUs | errors | APDU/s | RSS start → end | threads start → end | fds start → end | goroutines start → end | samples |\n|---|---:|---:|---:|---|---|---|---|---|\n")
	for _, id := range ids {
		pt := &path{id: id, apdus: chunk}
		var csLog *logtest.Buffer
		switch id {
		case pathCLI:
			pt.socket = s.Home + "/soak.comm"
			pt.pid = startCLI(b, buildCardshare(b), s, p.Socket, pt.socket)
		case pathCardshare:
			pt.socket, csLog = startCardshare(b, s, p.Socket)
		}
		waitReady(b, bin, pt.socket)
		runBench(b, bin, pt, min(1000, chunk)) // warm up: first connections, buffers, GC pacing

		sample := func(n int) soakPoint {
			time.Sleep(500 * time.Millisecond) // let closed connections end
			sp := soakPoint{apdus: n}
			if pt.pid != 0 {
				sp.proc = sampleProc(pt.pid)
			} else {
				runtime.GC()
				sp.proc = sampleProc(os.Getpid())
				sp.goroutines = runtime.NumGoroutine()
			}
			return sp
		}
		points := []soakPoint{sample(0)}
		var runs []testenv.Bench
		start := time.Now()
		for done := 0; done < total; {
			n := min(chunk, total-done)
			runs = append(runs, runBench(b, bin, pt, n)) // fails the benchmark at the first error
			done += n
			points = append(points, sample(done))
		}
		elapsed := time.Since(start)
		if csLog != nil && (strings.Contains(csLog.String(), "level=WARN") || strings.Contains(csLog.String(), "level=ERROR")) {
			b.Errorf("bench: soak %s: cardshare logged problems:\n%s", id, csLog)
		}

		first, last := points[0], points[len(points)-1]
		sum := summarize(runs)
		if sum.count != total {
			b.Fatalf("bench: soak %s: %d APDUs, want %d", id, sum.count, total)
		}
		var rss []string
		for _, sp := range points {
			rss = append(rss, fmt.Sprintf("%.1f", float64(sp.proc.rssKB)/1024))
		}
		gor := "–"
		if pt.pid == 0 {
			gor = fmt.Sprintf("%d → %d", first.goroutines, last.goroutines)
		}
		// runBench stops the benchmark at a client's first error.
		name := pathNames[id]
		if id == pathCardshare {
			name = "in-process forward.Expose"
		}
		fmt.Fprintf(&t, "| %s | %d | 0 | %.0f | %s → %s | %d → %d | %d → %d | %s | RSS MB after each %d: %s |\n",
			name, sum.count, float64(sum.count)/elapsed.Seconds(), mb(first.proc.rssKB), mb(last.proc.rssKB),
			first.proc.threads, last.proc.threads, first.proc.fds, last.proc.fds, gor, chunk, strings.Join(rss, " "))
		b.ReportMetric(float64(sum.count)/elapsed.Seconds(), id+"-APDU/s")
		b.ReportMetric(float64(last.proc.rssKB-first.proc.rssKB)/1024, id+"-RSS-growth-MB")
	}
	fmt.Printf("%s\nstart is after a warm-up of %d APDUs; each sample follows a client run of %d APDUs (a new pcsc-lite connection) and 0.5 s of rest. In-process figures are the whole test process, which also runs the test card.\n\n",
		t.String(), min(1000, chunk), chunk)
	b.ReportMetric(0, "ns/op")
}
