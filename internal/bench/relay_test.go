//go:build linux

package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

// cardshare's relay mode in BenchmarkRelay: `relay serve` and `relay agent`
// as two processes, as deployed; and both ends inside the benchmark process.
// The Go pairs do socat's job without yamux: testdata/gorelay (io.Copy both
// ways over the runtime's poller) plainly; with rawio.RawIO as cardshare
// reads and writes, so that it differs from cardshare's relay only in TLS
// and yamux; and with TLS 1.3 on the TCP leg too, so that it differs only
// in yamux. testdata/epollrelay (one thread in its own epoll loop, as socat)
// is the ceiling of a Go relay.
const (
	pathGoPair    = "go-pair"
	pathGoRaw     = "go-pair-rawio"
	pathGoTLS     = "go-pair-rawio-tls"
	pathEpoll     = "go-epoll-pair"
	pathRelayCLI  = "relay-tls"
	pathRelayLib  = "relay-tls-inprocess"
	pathRelayBase = "relay-tls-baseline" // with -baseline-bin only
)

var relayPathNames = map[string]string{
	pathDirect:    "direct",
	pathSocatTCP:  "socat Unix → TCP → Unix, `nodelay` (2 processes)",
	pathGoPair:    "bare Go relay Unix → TCP → Unix, io.Copy (2 processes)",
	pathGoRaw:     "the same with RawIO, as cardshare (2 processes)",
	pathGoTLS:     "the same with TLS 1.3 on the TCP leg (2 processes)",
	pathEpoll:     "bare Go relay Unix → TCP → Unix, own epoll loop (2 processes)",
	pathRelayCLI:  "cardshare relay serve + agent, TLS 1.3 + yamux (2 processes)",
	pathRelayLib:  "the same, both ends in the benchmark process",
	pathRelayBase: "cardshare relay serve + agent of -baseline-bin",
}

// BenchmarkRelay measures relay mode next to what it must beat, in one run
// against the same pcscd and card: the direct socket; a socat pair over
// loopback TCP with nodelay (two relay processes and one TCP hop, no
// encryption); the same pair as two Go programs, gorelay and epollrelay;
// and cardshare's relay over loopback TCP with TLS 1.3 and yamux, once as
// the `relay serve` and `relay agent` processes and once with both ends in
// this process (which also runs the card). Rounds are interleaved as in
// BenchmarkPaths, with the same flags. For each pair of relay processes it
// reports their CPU time and sleeps per APDU.
//
// After the rounds it measures what idle connections cost the relay: the
// heap and stacks of idle pcsc-lite connections (host and agent ends
// together), and of idle guests with no connection.
//
//	go test -run '^$' -bench Relay -benchtime 1x ./internal/bench -args -rounds=5 -apdus=3000
func BenchmarkRelay(b *testing.B) {
	p := testenv.StartPCSCD(b)
	p.InsertCard(b)
	bin := testenv.BuildClient(b)

	r := startRelay(b, p.Socket, 1)
	paths := []*path{
		{id: pathDirect, socket: p.Socket},
		{id: pathSocatTCP},
		{id: pathGoPair},
		{id: pathGoRaw},
		{id: pathGoTLS},
		{id: pathEpoll},
		{id: pathRelayCLI},
		{id: pathRelayLib, socket: r.sockets[0]},
	}
	paths[1].socket, paths[1].pids = startSocatPair(b, p.Socket)
	paths[2].socket, paths[2].pids = startGoPair(b, p.Socket, "gorelay")
	paths[3].socket, paths[3].pids = startGoPair(b, p.Socket, "gorelay", "-rawio")
	paths[4].socket, paths[4].pids = startGoPair(b, p.Socket, "gorelay", "-rawio", "-tls")
	paths[5].socket, paths[5].pids = startGoPair(b, p.Socket, "epollrelay")
	paths[6].socket, paths[6].pids = startRelayCLI(b, p.Socket, "")
	if *flagBaseline != "" {
		base := &path{id: pathRelayBase}
		base.socket, base.pids = startRelayCLI(b, p.Socket, *flagBaseline)
		paths = append(paths, base)
	}
	for _, pt := range paths {
		pt.apdus = *flagAPDUs
	}
	for _, pt := range paths {
		waitReady(b, bin, pt.socket)
	}

	fmt.Println(machine(b, p, nil))
	for _, pt := range paths {
		if *flagWarmup > 0 {
			runBench(b, bin, pt, *flagWarmup)
		}
	}
	start := time.Now()
	for round := range *flagRounds {
		for i := range paths {
			pt := paths[(round+i)%len(paths)]
			pt.runs = append(pt.runs, runBench(b, bin, pt, pt.apdus))
		}
	}
	reportRelay(b, paths, time.Since(start))

	if *flagCount > 0 {
		var counts []pathCount
		for _, pt := range paths {
			if pt.id == pathRelayLib || pt.id == pathSocatTCP {
				continue // the card's process; socat forks per connection
			}
			procs := []watched{{rolePCSCD, p.PID}}
			for i, pid := range pt.pids {
				procs = append(procs, watched{[]string{"host end", "guest end"}[i], pid})
			}
			counts = append(counts, countPath(b, bin, pt, *flagCount, procs, "peer"))
		}
		printCounts(counts, relayPathNames, *flagCount)
	}

	perConn := idleConnCost(b, r, 100)
	r.stop()
	perGuest := idleGuestCost(b, p.Socket, 50)
	fmt.Printf("idle cost, host and agent ends together: %s per pcsc-lite connection (100 open), %s per guest with no connection (50 guests)\n\n",
		perConn, perGuest)
	b.ReportMetric(0, "ns/op")
}

func reportRelay(b *testing.B, paths []*path, elapsed time.Duration) {
	direct := summarize(paths[0].runs)
	var t strings.Builder
	fmt.Fprintf(&t, "\n%d rounds, interleaved, in %v\n\n", *flagRounds, elapsed.Round(100*time.Millisecond))
	t.WriteString("| path | APDUs | APDU/s | × direct | median µs | p99 µs | > 10 ms | max ms | relay CPU µs | relay sleeps |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, pt := range paths {
		s := summarize(pt.runs)
		cpu, sleeps := "–", "–"
		if len(pt.pids) > 0 {
			n := float64(s.count)
			cpu = fmt.Sprintf("%.0f", float64(pt.proc.cpu.Microseconds())/n)
			if pt.id != pathSocatTCP {
				sleeps = fmt.Sprintf("%.1f", float64(pt.proc.voluntary)/n)
			}
			b.ReportMetric(float64(pt.proc.cpu.Microseconds())/n, pt.id+"-relay-cpu-us/APDU")
		}
		fmt.Fprintf(&t, "| %s | %d | %.0f | %s | %.0f | %.0f (%.0f) | %.1f %% | %.1f | %s | %s |\n",
			relayPathNames[pt.id], s.count, s.perSec, formatRatio(s.perSec/direct.perSec), s.medianUS, s.p99US, s.worstP99US,
			100*float64(s.over10)/float64(s.count), s.maxUS/1e3, cpu, sleeps)
		b.ReportMetric(s.perSec, pt.id+"-APDU/s")
		b.ReportMetric(s.p99US, pt.id+"-p99-us")
		b.ReportMetric(100*float64(s.over10)/float64(s.count), pt.id+"-over10ms-%")
		if pt.id != pathDirect {
			b.ReportMetric(s.perSec/direct.perSec, pt.id+"-x-direct")
		}
	}
	relayS, socatS := summarize(paths[6].runs), summarize(paths[1].runs)
	t.WriteString("\nrelay CPU and sleeps are per APDU, summed over the path's two relay processes: CPU time of all threads (socat's from the children it forks per connection, at 10 ms resolution), and voluntary context switches (socat's are not known). Every sleep costs a wake-up on the APDU's path.\n")
	fmt.Fprintf(&t, "\nrelay processes ÷ socat pair: %.2f× APDU/s, median %+.0f µs; %s\n", relayS.perSec/socatS.perSec, relayS.medianUS-socatS.medianUS,
		roundRatios(paths[6].runs, paths[1].runs))
	t.WriteString(vsBaseline(paths, pathRelayCLI, pathRelayBase))
	fmt.Println(t.String())
}

// startSocatPair runs the socat pair of docs/benchmarks.md: one socat
// serves the guest socket and connects over TCP to the other, which
// connects to pcscd.
func startSocatPair(b *testing.B, pcscd string) (string, []int) {
	b.Helper()
	socket := filepath.Join(sockDir(b), "socat-tcp.comm")
	port := freePort(b)
	host := startSocat(b, "", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,nodelay", port), "UNIX-CONNECT:"+pcscd)
	guest := startSocat(b, socket, "UNIX-LISTEN:"+socket+",fork", fmt.Sprintf("TCP:127.0.0.1:%d,nodelay", port))
	return socket, []int{host, guest}
}

// startGoPair runs two processes of testdata/name, with flags, in place of
// the socat pair.
func startGoPair(b *testing.B, pcscd, name string, flags ...string) (string, []int) {
	b.Helper()
	dir := sockDir(b)
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/"+name).CombinedOutput(); err != nil {
		b.Fatalf("bench: build %s: %v\n%s", name, err, out)
	}
	socket := filepath.Join(dir, name+".comm")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	host := startRelayProcess(b, bin, append(flags, "tcp", addr, "unix", pcscd)...)
	guest := startRelayProcess(b, bin, append(flags, "unix", socket, "tcp", addr)...)
	return socket, []int{host, guest}
}

// startRelayCLI runs `relay serve` and `relay agent` of bin (empty: this
// build's cardshare) as two processes, paired through the CLI, and returns
// the guest socket.
func startRelayCLI(b *testing.B, pcscd, bin string) (string, []int) {
	b.Helper()
	dir := sockDir(b)
	if bin == "" {
		bin = buildCardshare(b)
	}
	state, creds, guest := filepath.Join(dir, "host"), filepath.Join(dir, "guest", "credentials.json"), filepath.Join(dir, "g", "pcscd.comm")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	host := startRelayProcess(b, bin, "relay", "serve", "--listen", addr, "--state-dir", state, "--pcscd-socket", pcscd,
		"--control-socket", filepath.Join(dir, "ctl", "relay.sock"))
	out, err := exec.Command(bin, "relay", "pair", "--state-dir", state, "vm1").CombinedOutput()
	if err != nil {
		b.Fatalf("bench: relay pair: %v\n%s", err, out)
	}
	token := regexp.MustCompile(`cs1-\S+`).Find(out)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command(bin, "relay", "join", "--credentials", creds, "--token", string(token), addr).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: relay join: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // serve is starting
	}
	agent := startRelayProcess(b, bin, "relay", "agent", "--credentials", creds, "--socket", guest)
	return guest, []int{host, agent}
}

// flagRelayEnv adds environment variables to the relay processes.
var flagRelayEnv = flag.String("relay-env", "", "comma-separated `VAR=value` pairs for the relay processes (cardshare relay serve and agent, gorelay), e.g. GOMAXPROCS=2")

// startRelayProcess runs bin with args, and -relay-env, until the benchmark
// ends, and returns its PID.
func startRelayProcess(b *testing.B, bin string, args ...string) int {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	if *flagRelayEnv != "" {
		cmd.Env = append(cmd.Env, strings.Split(*flagRelayEnv, ",")...)
	}
	out := new(logtest.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("bench: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() { stopProcess(cmd, exited) })
	return cmd.Process.Pid
}

// relayRun is a relay host and its agents in this process.
type relayRun struct {
	host    *relay.Host
	agents  []*relay.Agent
	sockets []string
	cancel  context.CancelFunc
	done    chan struct{}
}

func (r *relayRun) stop() {
	r.cancel()
	<-r.done
}

// startRelay serves pcscd through relay mode on loopback TCP, with n guests
// paired and connected, each with its own guest socket.
func startRelay(b *testing.B, pcscd string, n int) *relayRun {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &relayRun{cancel: cancel, done: make(chan struct{})}
	b.Cleanup(func() {
		cancel()
		<-r.done
	})
	dir := sockDir(b)
	state, err := trust.OpenHostState(filepath.Join(dir, "state"))
	if err != nil {
		b.Fatal(err)
	}
	daemon, err := pcsc.Probe(ctx, pcscd)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ln, err := relay.ListenAddr(ctx, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// idleConnCost opens 100 connections through one guest: above the
	// default cap per guest (connlimit.DefaultPerGuest), which is not what
	// it measures.
	limiter, err := connlimit.New(&connlimit.Config{PerGuest: 150, Total: 150, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	r.host = relay.NewHost(state, &relay.HostConfig{Logger: log, Dial: hostpcsc.Socket{Path: pcscd}.Dial, Relay: bridge.Config{Daemon: daemon, Limiter: limiter}})
	running := 1 + n
	exited := make(chan struct{}, running)
	go func() { r.host.Serve(ctx, ln); exited <- struct{}{} }()
	go func() {
		for range running {
			<-exited
		}
		close(r.done)
	}()
	for i := range n {
		name := fmt.Sprintf("vm%d", i)
		tok, err := state.Pair(name, time.Minute, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		creds, err := relay.Join(ctx, ln.Addr().String(), tok, nil)
		if err != nil {
			b.Fatal(err)
		}
		a, err := relay.NewAgent(creds, &relay.AgentConfig{Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(dir, name, "pcscd.comm")
		gl, err := unixsock.ListenGuestSocket(sock)
		if err != nil {
			b.Fatal(err)
		}
		go func() { a.Run(ctx, gl); exited <- struct{}{} }()
		r.agents = append(r.agents, a)
		r.sockets = append(r.sockets, sock)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range r.agents {
		for !a.Connected() {
			if time.Now().After(deadline) {
				b.Fatal("bench: agents not connected within 30 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return r
}

// memInUse is the heap and goroutine stacks in use after a collection.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// idleConnCost opens n pcsc-lite connections through r's first guest, each
// past its CMD_VERSION exchange and then idle, as a program that holds a
// context, and returns the memory they cost per connection.
func idleConnCost(b *testing.B, r *relayRun, n int) string {
	b.Helper()
	before, goroutines := memInUse(), runtime.NumGoroutine()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", r.sockets[0])
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		c.Write(pcsc.AppendVersionRequest(nil, pcsc.V44))
		var buf [12]byte
		if _, err := pcsc.ReadVersionReply(c, &buf); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.host.Status()[0].Open != int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("bench: %d of %d connections open at the host", r.host.Status()[0].Open, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := memInUse()
	perGoroutines := float64(runtime.NumGoroutine()-goroutines) / float64(n)
	for _, c := range conns {
		c.Close()
	}
	return fmt.Sprintf("%.1f KiB (%.0f goroutines)", float64(after-before)/float64(n)/1024, perGoroutines)
}

// idleGuestCost connects n guests with no pcsc-lite connection and returns
// the memory each costs: TLS, the yamux session and the agent.
func idleGuestCost(b *testing.B, pcscd string, n int) string {
	b.Helper()
	before, goroutines := memInUse(), runtime.NumGoroutine()
	r := startRelay(b, pcscd, n)
	after := memInUse()
	perGoroutines := float64(runtime.NumGoroutine()-goroutines) / float64(n)
	r.stop()
	return fmt.Sprintf("%.1f KiB (%.0f goroutines)", float64(after-before)/float64(n)/1024, perGoroutines)
}
