//go:build linux

package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

// Flags of the test binary; pass them after -args (scripts/bench.sh does).
var (
	flagRounds    = flag.Int("rounds", 5, "measured rounds, each running every path once")
	flagAPDUs     = flag.Int("apdus", 3000, "APDUs per round and path")
	flagSlowAPDUs = flag.Int("slow-apdus", 300, "APDUs per round on the ssh -N -R path, which stalls 40 ms at a time (~140 APDU/s)")
	flagWarmup    = flag.Int("warmup", 200, "unmeasured APDUs per path before the first round")
	flagCardDelay = flag.Duration("card-delay", 0, "BenchmarkPaths, BenchmarkNative and BenchmarkScale: the virtual card takes this long to answer each APDU, as a real card does (a PIV card or YubiKey: 2–20 ms); 0 answers at once, so that the paths, not the card, bound the rate")
	flagPaths     = flag.String("paths", "", "comma-separated paths to run, of "+strings.Join(pathIDs, ",")+`, or "all"; empty runs `+strings.Join(defaultPathIDs, ","))
	flagCLIEnv    = flag.String("cli-env", "", "comma-separated `VAR=value` settings for the cardshare-cli process, e.g. GOMAXPROCS=1")
	flagProfile   = flag.String("cardshare-cpuprofile", "", "after the rounds, run -profile-apdus APDUs through the in-process cardshare alone and write a CPU profile of this process (relay, x/crypto/ssh, virtual card) to `file`")
	flagProfileN  = flag.Int("profile-apdus", 20000, "APDUs of the profiled cardshare run")
	flagBaseline  = flag.String("baseline-bin", "", "a cardshare `binary` of another build (before a change, say): BenchmarkPaths and BenchmarkRelay also run it as a process, interleaved with this build's (paths "+pathCLIBase+", "+pathCLINativeBase+" with "+pathCLINative+", and "+pathRelayBase+"), and print this build ÷ baseline")
)

// The paths, in table order.
const (
	pathDirect     = "direct"
	pathSSHN       = "ssh-N"
	pathSSHSession = "ssh-session"
	pathCardshare  = "cardshare"
	pathCLI        = "cardshare-cli"
	pathCLINative  = "cardshare-cli-native"
	pathSocat      = "socat"
	pathSocatTCP   = "socat-tcp"
	pathCLIBase    = "cardshare-cli-baseline" // with -baseline-bin only
	// with -baseline-bin and cardshare-cli-native
	pathCLINativeBase = "cardshare-cli-native-baseline"
)

// pathIDs are all paths, in table order. The socat paths are references
// that run only when named in -paths: one relay process without encryption
// is about the floor for any relay, and two with a TCP hop between them is
// the floor for a relay through the guest's sshd.
var pathIDs = []string{pathDirect, pathSSHN, pathSSHSession, pathCardshare, pathCLI, pathCLINative, pathSocat, pathSocatTCP}

// defaultPathIDs run when -paths is empty.
var defaultPathIDs = []string{pathDirect, pathSSHN, pathSSHSession, pathCardshare, pathCLI, pathCLINative}

var pathNames = map[string]string{
	pathDirect:        "direct",
	pathSSHN:          "`ssh -N -R`",
	pathSSHSession:    "`ssh -R` + session",
	pathCardshare:     "cardshare expose",
	pathCLI:           "`cardshare expose` process",
	pathCLINative:     "`cardshare expose --backend native` process",
	pathSocat:         "socat Unix → Unix",
	pathSocatTCP:      "socat Unix → TCP → Unix",
	pathCLIBase:       "`cardshare expose` process, -baseline-bin",
	pathCLINativeBase: "`cardshare expose --backend native` process, -baseline-bin",
}

// path is one way from the client to the host pcscd.
type path struct {
	id     string
	socket string // where the client connects
	apdus  int    // per round
	runs   []testenv.Bench

	// pid is the host-side relay process (ssh or cardshare), 0 for
	// none or this process; pids are all the relay processes of a path
	// with several (BenchmarkRelay). proc sums their use over the
	// measured runs.
	pid  int
	pids []int
	proc procUse
}

// relayPIDs returns the relay processes whose use runBench measures.
func (pt *path) relayPIDs() []int {
	if pt.pid != 0 {
		return append([]int{pt.pid}, pt.pids...)
	}
	return pt.pids
}

// BenchmarkPaths measures APDU round trips from the real libpcsclite to the
// real pcscd and card, directly and through each forward, in one process run
// against the same pcscd, card and sshd. Rounds are interleaved: every round
// runs each path once, starting with a different path each time, so that a
// change of machine load hits all paths alike.
//
// The benchmark runs once whatever b.N is; run it with -benchtime 1x.
func BenchmarkPaths(b *testing.B) {
	want, err := selectedPaths()
	if err != nil {
		b.Fatal(err)
	}
	if *flagRounds < 1 || *flagAPDUs < 1 || *flagSlowAPDUs < 1 || *flagCardDelay < 0 {
		b.Fatal("bench: -rounds, -apdus and -slow-apdus must be positive, -card-delay not negative")
	}
	p := testenv.StartPCSCD(b)
	p.InsertCard(b).SetDelay(*flagCardDelay)
	bin := testenv.BuildClient(b)
	var s *testenv.SSHD
	if *flagBaseline != "" {
		want = append(slices.Clone(want), pathCLIBase)
		if slices.Contains(want, pathCLINative) {
			want = append(want, pathCLINativeBase)
		}
	}
	if slices.ContainsFunc(want, func(id string) bool { return id != pathDirect && id != pathSocat && id != pathSocatTCP }) {
		s = testenv.StartSSHD(b, testenv.SSHDOptions{})
	}

	var paths []*path
	var csLog *logtest.Buffer // the in-process cardshare's log
	var csBin string          // this build's cardshare, built once
	cardshare := func() string {
		if csBin == "" {
			csBin = buildCardshare(b)
		}
		return csBin
	}
	for _, id := range want {
		pt := &path{id: id, apdus: *flagAPDUs}
		switch id {
		case pathDirect:
			pt.socket = p.Socket
		case pathSSHN:
			pt.socket = filepath.Join(s.Home, "ssh-n.comm")
			pt.apdus = *flagSlowAPDUs
			pt.pid = startOpenSSH(b, s, p.Socket, pt.socket, false)
		case pathSSHSession:
			pt.socket = filepath.Join(s.Home, "ssh-session.comm")
			pt.pid = startOpenSSH(b, s, p.Socket, pt.socket, true)
		case pathCardshare:
			pt.socket, csLog = startCardshare(b, s, p.Socket)
		case pathCLI:
			pt.socket = filepath.Join(s.Home, "cardshare-cli.comm")
			pt.pid = startCLI(b, cardshare(), s, p.Socket, pt.socket)
		case pathCLINative:
			// The native backend's libpcsclite finds pcscd as every
			// client does: PCSCLITE_CSOCK_NAME.
			pt.socket = filepath.Join(s.Home, "cardshare-native.comm")
			pt.pid = startCLI(b, cardshare(), s, p.Socket, pt.socket, "--backend", "native")
		case pathCLIBase:
			pt.socket = filepath.Join(s.Home, "cardshare-base.comm")
			pt.pid = startCLI(b, *flagBaseline, s, p.Socket, pt.socket)
		case pathCLINativeBase:
			pt.socket = filepath.Join(s.Home, "cardshare-native-base.comm")
			pt.pid = startCLI(b, *flagBaseline, s, p.Socket, pt.socket, "--backend", "native")
		case pathSocat:
			pt.socket = filepath.Join(sockDir(b), "socat.comm")
			startSocat(b, pt.socket, "UNIX-LISTEN:"+pt.socket+",fork", "UNIX-CONNECT:"+p.Socket)
		case pathSocatTCP:
			pt.socket = filepath.Join(sockDir(b), "socat-tcp.comm")
			port := freePort(b)
			tcp := fmt.Sprintf("127.0.0.1:%d", port)
			startSocat(b, "", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,nodelay", port), "UNIX-CONNECT:"+p.Socket)
			startSocat(b, pt.socket, "UNIX-LISTEN:"+pt.socket+",fork", "TCP:"+tcp+",nodelay")
		}
		waitReady(b, bin, pt.socket)
		paths = append(paths, pt)
	}

	fmt.Println(machine(b, p, s))
	if c := ciphers(s, csLog); c != "" {
		fmt.Println(c)
	}
	for _, pt := range paths {
		if n := min(*flagWarmup, pt.apdus); n > 0 {
			runBench(b, bin, pt, n)
		}
		pt.proc = procUse{}
	}
	start := time.Now()
	for r := range *flagRounds {
		for i := range paths {
			pt := paths[(r+i)%len(paths)]
			pt.runs = append(pt.runs, runBench(b, bin, pt, pt.apdus))
		}
	}
	elapsed := time.Since(start)

	report(b, paths, elapsed)

	if *flagCount > 0 {
		var counts []pathCount
		for _, pt := range paths {
			procs := []watched{{rolePCSCD, p.PID}}
			switch pt.id {
			case pathCardshare:
				continue // shares this process with the card
			case pathSSHN, pathSSHSession:
				procs = append(procs, watched{"ssh", pt.pid})
			case pathCLI, pathCLINative, pathCLIBase, pathCLINativeBase:
				procs = append(procs, watched{"cardshare", pt.pid})
			}
			counts = append(counts, countPath(b, bin, pt, *flagCount, procs, "guest sshd"))
		}
		printCounts(counts, pathNames, *flagCount)
	}

	if *flagProfile != "" {
		for _, pt := range paths {
			if pt.id == pathCardshare {
				profileRun(b, bin, pt, *flagProfile, *flagProfileN)
			}
		}
	}
}

func selectedPaths() ([]string, error) {
	if *flagPaths == "" {
		return defaultPathIDs, nil
	}
	if *flagPaths == "all" {
		return pathIDs, nil
	}
	var ids []string
	for id := range strings.SplitSeq(*flagPaths, ",") {
		id = strings.TrimSpace(id)
		if !slices.Contains(pathIDs, id) {
			return nil, fmt.Errorf("bench: unknown path %q in -paths; known: %s", id, strings.Join(pathIDs, ", "))
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	// Table order, whatever the flag's order.
	slices.SortFunc(ids, func(a, b string) int { return slices.Index(pathIDs, a) - slices.Index(pathIDs, b) })
	return ids, nil
}

// runBench runs the client's bench mode with n round trips on pt, and adds
// what the host-side relay process used meanwhile to pt.proc.
func runBench(b *testing.B, bin string, pt *path, n int) testenv.Bench {
	b.Helper()
	if pids := pt.relayPIDs(); len(pids) > 0 {
		before := readProcsUse(pids)
		defer func() {
			// socat forks a child per connection: its use counts once
			// the parent has reaped it.
			time.Sleep(20 * time.Millisecond)
			pt.proc.add(readProcsUse(pids).sub(before))
		}()
	}
	out, err := testenv.RunClient(b, bin, pt.socket, "bench", strconv.Itoa(n))
	if err != nil {
		b.Fatalf("bench: %s: %v", pt.id, err)
	}
	r, err := testenv.ParseBench(out)
	if err != nil {
		b.Fatalf("bench: %s: %v", pt.id, err)
	}
	return r
}

// startOpenSSH forwards guest (in the sshd's guest) to host with the real
// ssh client: `ssh -N -R guest:host` as blog posts recommend, or with session
// a remote command instead of -N. A session makes sshd turn on TCP_NODELAY
// (ssh_packet_set_interactive in OpenSSH's packet.c); -N never does.
//
// sshd never unlinks the socket it binds for -R, and fails to bind over a
// leftover one, so the socket is removed before and after.
func startOpenSSH(b *testing.B, s *testenv.SSHD, host, guest string, session bool) int {
	b.Helper()
	if err := os.Remove(guest); err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	args := []string{"-F", s.ConfigFile, "-o", "ExitOnForwardFailure=yes", "-R", guest + ":" + host}
	if session {
		args = append(args, "-T", s.HostAlias, "cat > /dev/null")
	} else {
		args = append(args, "-N", s.HostAlias)
	}
	cmd := exec.Command("/usr/bin/ssh", args...)
	stderr := new(logtest.Buffer)
	cmd.Stderr = stderr
	// The ssh process must not outlive a crashed test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdin io.WriteCloser
	if session {
		// Never written: cat keeps the session open until it is closed.
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("bench: start ssh: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		if stdin != nil {
			stdin.Close()
		}
		stopProcess(cmd, exited)
		os.Remove(guest)
	})
	waitSocket(b, guest, exited, stderr)
	return cmd.Process.Pid
}

// stopProcess stops a child by its PID: SIGTERM, then SIGKILL after 5 s.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// waitSocket waits for a child to create the socket path.
func waitSocket(b *testing.B, path string, exited <-chan struct{}, stderr *logtest.Buffer) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			b.Fatalf("bench: the process forwarding %s exited: %s", path, stderr)
		default:
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: no socket %s after 30 s: %s", path, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCLI runs `cardshare expose` of bin (buildCardshare, or
// -baseline-bin) as a process of its own, as users run it: unlike the in-process path, its Go runtime is not
// shared with the virtual card, and its CPU time and context switches can be
// counted apart. args go before the destination (--backend native); the
// environment names host in PCSCLITE_CSOCK_NAME too, where the native
// backend's libpcsclite looks for pcscd, and takes the -cli-env settings.
func startCLI(b *testing.B, bin string, s *testenv.SSHD, host, guest string, args ...string) int {
	b.Helper()
	os.Remove(guest)
	args = append([]string{"expose", "-F", s.ConfigFile, "--pcscd-socket", host, "--guest-socket", guest}, args...)
	cmd := exec.Command(bin, append(args, s.HostAlias)...)
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+host)
	if *flagCLIEnv != "" {
		cmd.Env = append(cmd.Env, strings.Split(*flagCLIEnv, ",")...)
	}
	out := new(logtest.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("bench: start cardshare: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		stopProcess(cmd, exited)
		os.Remove(guest)
	})
	waitSocket(b, guest, exited, out)
	return cmd.Process.Pid
}

// buildCardshare builds cmd/cardshare into a temporary directory of the
// benchmark and returns the binary's path.
func buildCardshare(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "cardshare")
	// go test puts its own go first in PATH.
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cardshare/cardshare/cmd/cardshare").CombinedOutput(); err != nil {
		b.Fatalf("bench: build cardshare: %v\n%s", err, out)
	}
	return bin
}

// sockDir returns a new directory with a path short enough for sun_path.
func sockDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startSocat runs socat with two addresses and, when socket is set, waits
// for it to appear. A TCP listener needs no wait: waitReady retries.
func startSocat(b *testing.B, socket, from, to string) int {
	b.Helper()
	cmd := exec.Command("socat", from, to)
	out := new(logtest.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("bench: start socat (apt-get install socat): %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() { stopProcess(cmd, exited) })
	if socket != "" {
		waitSocket(b, socket, exited, out)
	}
	return cmd.Process.Pid
}

// procUse is what a process used: CPU time and context switches, summed
// over its threads.
type procUse struct {
	cpu         time.Duration
	voluntary   uint64 // the thread slept: a wake-up is needed to go on
	involuntary uint64 // the thread was preempted
}

func (u *procUse) add(v procUse) {
	u.cpu += v.cpu
	u.voluntary += v.voluntary
	u.involuntary += v.involuntary
}

func (u procUse) sub(v procUse) procUse {
	return procUse{u.cpu - v.cpu, u.voluntary - v.voluntary, u.involuntary - v.involuntary}
}

// readProcsUse sums readProcUse over pids.
func readProcsUse(pids []int) procUse {
	var u procUse
	for _, pid := range pids {
		u.add(readProcUse(pid))
	}
	return u
}

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ).
const clockTick = 10 * time.Millisecond

// readProcUse reads pid's use from /proc: schedstat has each thread's CPU
// time in ns, status its context switches, and stat the CPU time of its
// children that ended (socat's, one per connection; their context switches
// are not known).
func readProcUse(pid int) procUse {
	var u procUse
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which may hold spaces: state
		// is the first, cutime and cstime the 14th and 15th.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 14 {
				cu, _ := strconv.ParseInt(f[13], 10, 64)
				cs, _ := strconv.ParseInt(f[14], 10, 64)
				u.cpu += time.Duration(cu+cs) * clockTick
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		if b, err := os.ReadFile(filepath.Join(t, "schedstat")); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				u.cpu += time.Duration(ns)
			}
		}
		b, err := os.ReadFile(filepath.Join(t, "status"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			k, v, _ := strings.Cut(line, ":")
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				u.voluntary += n
			case "nonvoluntary_ctxt_switches":
				u.involuntary += n
			}
		}
	}
	return u
}

// startCardshare runs forward.Expose in this process, as `cardshare expose`
// does, and returns the guest socket once the forward is up, and the log.
func startCardshare(b *testing.B, s *testenv.SSHD, host string) (string, *logtest.Buffer) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	daemon, err := pcsc.Probe(ctx, host)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	target, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	log := new(logtest.Buffer)
	events := make(chan forward.Event, 16)
	cfg := forward.DefaultConfig()
	cfg.HostSocket = host
	cfg.Daemon = daemon
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnEvent = func(e forward.Event) {
		select {
		case events <- e:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- forward.Expose(ctx, []forward.Guest{{Name: s.HostAlias, Target: target}}, cfg) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	timeout := time.After(time.Minute)
	for {
		select {
		case e := <-events:
			switch e.State {
			case forward.StateUp:
				return e.Socket, log
			case forward.StateFailed, forward.StateBackoff:
				b.Fatalf("bench: cardshare expose: %s: %v\n%s", e.State, e.Err, log)
			}
		case <-timeout:
			b.Fatalf("bench: cardshare expose not up within a minute:\n%s", log)
		}
	}
}

// waitReady waits until a client completes a hello-world exchange on socket:
// the forward's first connection works end to end.
func waitReady(b *testing.B, bin, socket string) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := testenv.RunClient(b, bin, socket, "hello")
		if err == nil && strings.Contains(out, "Hello world!") {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("bench: no hello world through %s within 15 s: %q, %v", socket, out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// summary aggregates a path's rounds.
type summary struct {
	count      int
	perSec     float64 // all APDUs over all measured time
	minSec     float64 // slowest round, APDU/s
	maxSec     float64 // fastest round, APDU/s
	medianUS   float64 // median of the rounds' medians
	p99US      float64 // median of the rounds' 99th percentiles
	worstP99US float64 // highest round 99th percentile
	maxUS      float64 // slowest round trip of all
	over10     int     // round trips over 10 ms, all rounds
}

func summarize(runs []testenv.Bench) summary {
	var s summary
	var totalMS float64
	var medians, p99s []float64
	for i, r := range runs {
		s.count += r.Count
		totalMS += r.TotalMS
		s.over10 += r.Over10ms
		s.maxUS = max(s.maxUS, r.MaxUS)
		s.worstP99US = max(s.worstP99US, r.P99US)
		if i == 0 || r.PerSec < s.minSec {
			s.minSec = r.PerSec
		}
		s.maxSec = max(s.maxSec, r.PerSec)
		medians = append(medians, r.MedianUS)
		p99s = append(p99s, r.P99US)
	}
	if totalMS > 0 {
		s.perSec = float64(s.count) / (totalMS / 1e3)
	}
	s.medianUS = median(medians)
	s.p99US = median(p99s)
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// report prints the table and reports each path's figures as metrics.
func report(b *testing.B, paths []*path, elapsed time.Duration) {
	sums := make(map[string]summary)
	for _, pt := range paths {
		sums[pt.id] = summarize(pt.runs)
	}
	direct, haveDirect := sums[pathDirect]

	var t strings.Builder
	fmt.Fprintf(&t, "\n%d rounds, interleaved, in %v; %s; APDU/s is all APDUs over all measured time; median and p99 are medians over the rounds (worst round's p99 in brackets)\n\n",
		*flagRounds, elapsed.Round(100*time.Millisecond), cardDelayNote(*flagCardDelay))
	t.WriteString("| path | APDUs | APDU/s | × direct | median µs | p99 µs | > 10 ms | max ms | relay CPU µs | relay switches | APDU/s by round |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, pt := range paths {
		s := sums[pt.id]
		ratio := "–"
		if haveDirect && direct.perSec > 0 {
			ratio = formatRatio(s.perSec / direct.perSec)
		}
		var rounds []string
		for _, r := range pt.runs {
			rounds = append(rounds, fmt.Sprintf("%.0f", r.PerSec))
		}
		cpu, switches := "–", "–"
		if pt.pid != 0 {
			n := float64(s.count)
			cpu = fmt.Sprintf("%.0f", float64(pt.proc.cpu.Microseconds())/n)
			switches = fmt.Sprintf("%.1f + %.1f", float64(pt.proc.voluntary)/n, float64(pt.proc.involuntary)/n)
		}
		fmt.Fprintf(&t, "| %s | %d | %.0f | %s | %.0f | %.0f (%.0f) | %.1f %% | %.1f | %s | %s | %s |\n",
			pathNames[pt.id], s.count, s.perSec, ratio, s.medianUS, s.p99US, s.worstP99US,
			100*float64(s.over10)/float64(s.count), s.maxUS/1e3, cpu, switches, strings.Join(rounds, " "))
	}
	t.WriteString("\nrelay CPU and switches are per APDU, in the host-side relay process (ssh, or cardshare run as a process): " +
		"CPU time of all its threads, and voluntary + involuntary context switches. Every voluntary switch is a sleep that costs a wake-up on the APDU's path.\n")
	for _, id := range []string{pathCardshare, pathCLI} {
		a, ok := sums[id]
		if o, ok2 := sums[pathSSHSession]; ok && ok2 && o.perSec > 0 {
			fmt.Fprintf(&t, "\n%s ÷ OpenSSH with a session: %.2f× APDU/s, median %+.0f µs; %s",
				pathNames[id], a.perSec/o.perSec, a.medianUS-o.medianUS, roundRatios(pathRuns(paths, id), pathRuns(paths, pathSSHSession)))
		}
	}
	t.WriteString(vsBaseline(paths, pathCLI, pathCLIBase))
	t.WriteString(vsBaseline(paths, pathCLINative, pathCLINativeBase))
	if a, ok := sums[pathCLINative]; ok {
		if o, ok := sums[pathCLI]; ok && o.perSec > 0 {
			fmt.Fprintf(&t, "\n%s ÷ %s (the socket backend): %.2f× APDU/s, median %+.0f µs; %s\n",
				pathNames[pathCLINative], pathNames[pathCLI], a.perSec/o.perSec, a.medianUS-o.medianUS, roundRatios(pathRuns(paths, pathCLINative), pathRuns(paths, pathCLI)))
		}
	}
	if *flagCLIEnv != "" && slices.ContainsFunc(paths, func(pt *path) bool { return pt.id == pathCLI }) {
		fmt.Fprintf(&t, "\n%s ran with %s", pathNames[pathCLI], *flagCLIEnv)
	}
	t.WriteString("\n")
	fmt.Println(t.String())

	for _, pt := range paths {
		s := sums[pt.id]
		b.ReportMetric(s.perSec, pt.id+"-APDU/s")
		if haveDirect && pt.id != pathDirect && direct.perSec > 0 {
			b.ReportMetric(s.perSec/direct.perSec, pt.id+"-x-direct")
		}
		b.ReportMetric(s.medianUS, pt.id+"-median-us")
		b.ReportMetric(s.p99US, pt.id+"-p99-us")
		b.ReportMetric(100*float64(s.over10)/float64(s.count), pt.id+"-over10ms-%")
		if pt.pid != 0 {
			b.ReportMetric(float64(pt.proc.cpu.Microseconds())/float64(s.count), pt.id+"-relay-cpu-us/APDU")
		}
	}
	// The wall time of one iteration is the whole run: meaningless.
	b.ReportMetric(0, "ns/op")
}

func formatRatio(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.3f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

// machine describes what the figures were measured on.
func machine(b *testing.B, p *testenv.PCSCD, s *testenv.SSHD) string {
	b.Helper()
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	if v, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(v))
	}
	pcscd := "pcscd ?"
	if out, err := exec.Command("/usr/sbin/pcscd", "--version").Output(); err == nil {
		line, _, _ := strings.Cut(string(out), "\n")
		pcscd = strings.TrimSuffix(strings.TrimPrefix(line, "pcsc-lite version "), ".")
		pcscd = "pcscd " + pcscd
	}
	if d, err := pcsc.Probe(context.Background(), p.Socket); err == nil {
		pcscd += " (" + d.String() + ")"
	}
	line := fmt.Sprintf("machine: nproc=%d GOMAXPROCS=%d, %s, Linux %s, %s %s/%s, %s",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpu, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, pcscd)
	if s != nil {
		if out, err := exec.Command("/usr/bin/ssh", "-V").CombinedOutput(); err == nil {
			v, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
			line += ", " + v
		}
	}
	return line
}

// ciphers names the ciphers of the SSH paths: OpenSSH's first choice, and
// the one the in-process cardshare logged (csLog, when not nil).
func ciphers(s *testenv.SSHD, csLog *logtest.Buffer) string {
	var c []string
	if s != nil {
		if o := opensshCipher(s); o != "" {
			c = append(c, "OpenSSH "+o)
		}
	}
	if csLog != nil {
		if o := logField(csLog.String(), "cipher="); o != "" {
			c = append(c, "cardshare "+o)
		}
	}
	if len(c) == 0 {
		return ""
	}
	return "ciphers: " + strings.Join(c, ", ")
}

// opensshCipher is the ssh client's first cipher choice; sshd accepts all
// of OpenSSH's defaults, so it is the one negotiated.
func opensshCipher(s *testenv.SSHD) string {
	out, err := exec.Command("/usr/bin/ssh", "-G", "-F", s.ConfigFile, s.HostAlias).Output()
	if err != nil {
		return ""
	}
	c := logField(string(out), "ciphers ")
	first, _, _ := strings.Cut(c, ",")
	return first
}

// logField returns the value after the first occurrence of key, up to the
// next space or line end.
func logField(text, key string) string {
	_, rest, ok := strings.Cut(text, key)
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, " \n"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// profileRun runs n APDUs through pt alone with the CPU profiler on.
func profileRun(b *testing.B, bin string, pt *path, file string, n int) {
	b.Helper()
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("bench: %v (is -cpuprofile set too?)", err)
	}
	r := runBench(b, bin, pt, n)
	pprof.StopCPUProfile()
	fmt.Printf("profiled %s run: %v\nCPU profile: %s (go tool pprof -top %s)\n", pt.id, r, file, file)
}

// BenchmarkPipe measures one bridge.Pipe hop between two Unix socket pairs
// with the messages of one SCardTransmit of a 5-byte APDU, as libpcsclite
// 1.9.9 and pcscd write them: the client writes the 8-byte header, the
// 32-byte transmit_struct and the APDU; pcscd answers with the
// transmit_struct and the 14-byte response. "direct" is the same exchange
// without the relay, the floor to subtract. An op is one round trip;
// allocs/op is what relaying a message costs the garbage collector.
func BenchmarkPipe(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		client, daemon := unixPair(b)
		benchExchange(b, client, daemon)
	})
	b.Run("relay", func(b *testing.B) {
		client, guestEnd := unixPair(b)
		hostEnd, daemon := unixPair(b)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- bridge.Pipe(ctx, guestEnd, hostEnd, nil) }()
		benchExchange(b, client, daemon)
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Pipe: %v", err)
		}
	})
}

func benchExchange(b *testing.B, client, daemon net.Conn) {
	go func() {
		var req [8 + 32 + 5]byte
		var reply [32 + 14]byte
		for {
			if _, err := io.ReadFull(daemon, req[:]); err != nil {
				return
			}
			if _, err := daemon.Write(reply[:32]); err != nil {
				return
			}
			if _, err := daemon.Write(reply[32:]); err != nil {
				return
			}
		}
	}()
	req := make([]byte, 8+32+5)
	reply := make([]byte, 32+14)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range [][]byte{req[:8], req[8:40], req[40:]} {
			if _, err := client.Write(m); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(client, reply[:32]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, reply[32:]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	client.Close()
}

// unixPair returns the two ends of a connected Unix stream socket.
func unixPair(b *testing.B) (net.Conn, net.Conn) {
	b.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		c1.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// vsBaseline compares this build's path id with the same path of
// -baseline-bin, base, when both ran: "" otherwise.
func vsBaseline(paths []*path, id, base string) string {
	var a, o []testenv.Bench
	for _, pt := range paths {
		switch pt.id {
		case id:
			a = pt.runs
		case base:
			o = pt.runs
		}
	}
	if len(a) == 0 || len(o) == 0 {
		return ""
	}
	as, os := summarize(a), summarize(o)
	return fmt.Sprintf("\n%s, this build ÷ -baseline-bin %s: %.2f× APDU/s, median %+.0f µs, p99 %+.0f µs; %s\n",
		id, *flagBaseline, as.perSec/os.perSec, as.medianUS-os.medianUS, as.p99US-os.p99US, roundRatios(a, o))
}

// pathRuns returns the runs of path id.
func pathRuns(paths []*path, id string) []testenv.Bench {
	for _, pt := range paths {
		if pt.id == id {
			return pt.runs
		}
	}
	return nil
}

// roundRatios describes the ratios of a to b round by round: each round
// runs both within seconds, so that the load of the machine, which moves
// APDU/s severalfold between rounds on a shared machine, weighs on both
// alike.
func roundRatios(a, b []testenv.Bench) string {
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i].PerSec > 0 {
			r = append(r, a[i].PerSec/b[i].PerSec)
		}
	}
	if len(r) == 0 {
		return ""
	}
	slices.Sort(r)
	q := func(f float64) float64 { return r[int(f*float64(len(r)-1)+0.5)] }
	ahead := 0
	for _, x := range r {
		if x > 1 {
			ahead++
		}
	}
	return fmt.Sprintf("round by round: median %.2f×, quartiles %.2f–%.2f, ahead in %d of %d rounds", q(0.5), q(0.25), q(0.75), ahead, len(r))
}
