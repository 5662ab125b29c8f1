//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/logtest"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

var (
	flagScaleGuests  = flag.Int("scale-guests", 100, "guests of BenchmarkScale, all on one sshd")
	flagScaleAPDUs   = flag.Int("scale-apdus", 500, "APDUs of each guest's client in BenchmarkScale")
	flagScaleIdle    = flag.Duration("scale-idle", 10*time.Second, "how long BenchmarkScale watches the idle `cardshare up` for its CPU use")
	flagScaleInproc  = flag.Bool("scale-inproc", true, "BenchmarkScale: also run forward.Expose for all guests in the test process, where goroutines can be counted")
	flagScaleBackend = flag.String("scale-backend", "socket", "BenchmarkScale: the host backend of the `cardshare up` process, socket (the pcscd socket) or native (internal/nativepcsc over libpcsclite, which finds the test pcscd through PCSCLITE_CSOCK_NAME); the in-process run (-scale-inproc) serves the socket backend whatever this says")
)

// scaleSSHDConfig is what one sshd needs to serve a hundred guests that
// connect at once. sshd drops unauthenticated connections beyond
// MaxStartups (OpenSSH's default 10:30:100 starts dropping at 10); testenv
// writes "MaxStartups 100" and a line given here wins.
var scaleSSHDConfig = []string{"MaxStartups 1000"}

// BenchmarkScale runs one `cardshare up` process with -scale-guests guests,
// all served by one real sshd on loopback, each with its own guest socket,
// and then a C client (real libpcsclite) on every guest at once. It reports
// the start-up time of all guests, the process's RSS, threads, descriptors
// and CPU when idle and under load, the aggregate APDU rate next to the same
// number of clients on the host socket directly, and each guest's rate
// (fairness). With -scale-inproc it runs the same guests through
// forward.Expose in the test process, to count goroutines, which a process
// does not show from outside.
//
// The test card answers at once, so the aggregate rate measures the CPU the
// path costs: with many guests on 2 cores, cardshare and the guests' sshd
// compete with pcscd and the card for it. A real card takes milliseconds
// per APDU and one reader answers one APDU at a time; -card-delay
// gives the card such a delay, so that the runs show whether cardshare
// keeps the reader as busy as direct clients do.
//
// The benchmark runs once whatever b.N is; run it with -benchtime 1x, or
// scripts/scale.sh.
func BenchmarkScale(b *testing.B) {
	n, apdus := *flagScaleGuests, *flagScaleAPDUs
	if n < 1 || apdus < 1 || *flagCardDelay < 0 {
		b.Fatal("bench: -scale-guests and -scale-apdus must be positive, -card-delay not negative")
	}
	p := testenv.StartPCSCD(b)
	p.InsertCard(b).SetDelay(*flagCardDelay)
	bin := testenv.BuildClient(b)
	s := testenv.StartSSHD(b, testenv.SSHDOptions{Config: scaleSSHDConfig})
	s.Run(b, "mkdir -m 700 scale")
	sockets := make([]string, n)
	for i := range sockets {
		sockets[i] = filepath.Join(s.Home, "scale", fmt.Sprintf("g%03d.comm", i))
	}
	fmt.Println(machine(b, p, s))
	fmt.Printf("sshd: %s (testenv's config otherwise)\n", strings.Join(scaleSSHDConfig, ", "))

	waitReady(b, bin, p.Socket)
	// The single client runs for under a second at full speed, and for
	// about three with a card delay.
	singleAPDUs := 3000
	if d := *flagCardDelay; d > 0 {
		singleAPDUs = max(100, int(3*time.Second/d))
	}
	single := runClients(b, bin, []string{p.Socket}, singleAPDUs, &cpuWatch{pcscd: p.PID}, nil)
	direct := runClients(b, bin, slices.Repeat([]string{p.Socket}, n), apdus, &cpuWatch{pcscd: p.PID}, nil)

	up := scaleProcess(b, bin, p, s, sockets, apdus)
	var in *scaleInproc
	if *flagScaleInproc {
		in = scaleInProcess(b, bin, p, s, sockets, apdus)
	}
	reportScale(b, n, apdus, single, direct, up, in)
}

// clientsRun is one run of a client on each of a set of sockets at once.
type clientsRun struct {
	runs []testenv.Bench // per socket, in order; zero for a failed client
	errs []error         // per socket
	wall time.Duration   // from the first client's start to the last one's exit
	cpu  cpuBudget       // where the machine's CPU time went meanwhile
}

// cpuBudget is the CPU time of each part of the path during a run.
type cpuBudget struct {
	clients, pcscd, sshd, cardshare time.Duration
	card                            time.Duration // this process: the test card (and the in-process cardshare)
	machine                         time.Duration // all CPUs busy, from /proc/stat
}

// cpuWatch measures the CPU time of pcscd, of the guest's sshd (the
// listener's descendants: per-connection processes and sessions) and of a
// cardshare process (0 for none) over a run.
type cpuWatch struct {
	pcscd, sshd, cardshare int
	start                  cpuBudget
}

func (w *cpuWatch) now() cpuBudget {
	var c cpuBudget
	c.pcscd = procCPU(w.pcscd)
	if w.sshd != 0 {
		for _, pid := range descendants(w.sshd) {
			c.sshd += procCPU(pid)
		}
	}
	if w.cardshare != 0 {
		c.cardshare = procCPU(w.cardshare)
	}
	c.card = procCPU(os.Getpid())
	c.machine = machineBusy()
	return c
}

// procCPU is a process's user and system time from /proc/PID/stat, which
// unlike the tasks' figures includes threads that have exited: pcscd runs a
// thread per client.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3, state
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func (w *cpuWatch) begin() { w.start = w.now() }

func (w *cpuWatch) end(clients time.Duration) cpuBudget {
	c := w.now()
	return cpuBudget{clients: clients, pcscd: c.pcscd - w.start.pcscd, sshd: c.sshd - w.start.sshd,
		cardshare: c.cardshare - w.start.cardshare, card: c.card - w.start.card, machine: c.machine - w.start.machine}
}

// descendants returns the processes below pid, not pid itself.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// The command name may contain spaces and parentheses: skip it.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				ppid, _ := strconv.Atoi(f[1])
				children[ppid] = append(children[ppid], p)
			}
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// machineBusy is the time all CPUs together were not idle since boot.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, iowait, guest
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func (r clientsRun) failed() int {
	n := 0
	for _, err := range r.errs {
		if err != nil {
			n++
		}
	}
	return n
}

func (r clientsRun) total() int {
	t := 0
	for _, x := range r.runs {
		t += x.Count
	}
	return t
}

// perSec is all APDUs over the wall time: what the card delivered to all
// clients together, process start and SCardConnect included.
func (r clientsRun) perSec() float64 { return float64(r.total()) / r.wall.Seconds() }

// rates are the clients' own APDU rates, sorted.
func (r clientsRun) rates() []float64 {
	var v []float64
	for i, x := range r.runs {
		if r.errs[i] == nil {
			v = append(v, x.PerSec)
		}
	}
	slices.Sort(v)
	return v
}

// runClients runs `pcscclient bench apdus` on every socket at once, and calls
// sample every 100 ms until all have exited. w measures the CPU time of the
// other parts.
func runClients(b *testing.B, bin string, sockets []string, apdus int, w *cpuWatch, sample func()) clientsRun {
	b.Helper()
	r := clientsRun{runs: make([]testenv.Bench, len(sockets)), errs: make([]error, len(sockets))}
	var mu sync.Mutex
	var clientCPU time.Duration
	w.begin()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, sock := range sockets {
		var stdout, stderr bytes.Buffer
		cmd := testenv.ClientCommand(ctx, bin, sock, "bench", strconv.Itoa(apdus))
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			b.Fatalf("bench: start client: %v", err)
		}
		wg.Go(func() {
			err := cmd.Wait()
			if ps := cmd.ProcessState; ps != nil {
				mu.Lock()
				clientCPU += ps.UserTime() + ps.SystemTime()
				mu.Unlock()
			}
			if err != nil {
				r.errs[i] = fmt.Errorf("client on %s: %w: %s", sock, err, strings.TrimSpace(stderr.String()))
				return
			}
			r.runs[i], r.errs[i] = testenv.ParseBench(stdout.String())
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			r.wall = time.Since(start)
			r.cpu = w.end(clientCPU)
			for _, err := range r.errs {
				if err != nil {
					b.Errorf("bench: %v", err)
					break
				}
			}
			return r
		case <-tick.C:
			if sample != nil {
				sample()
			}
		}
	}
}

// procSample is what /proc says about a process.
type procSample struct {
	rssKB, peakKB int // VmRSS, VmHWM
	threads       int
	fds           int
	cpu           time.Duration // user and system time of all threads
}

func sampleProc(pid int) procSample {
	var s procSample
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.Lines(string(st)) {
			k, v, _ := strings.Cut(line, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.Atoi(f[0])
			switch k {
			case "VmRSS":
				s.rssKB = n
			case "VmHWM":
				s.peakKB = n
			case "Threads":
				s.threads = n
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(fds)
	}
	s.cpu = readProcUse(pid).cpu
	return s
}

// maxOf keeps the largest of each figure.
func (s *procSample) maxOf(o procSample) {
	s.rssKB, s.peakKB = max(s.rssKB, o.rssKB), max(s.peakKB, o.peakKB)
	s.threads, s.fds = max(s.threads, o.threads), max(s.fds, o.fds)
}

func mb(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// scaleUp is what BenchmarkScale measured of the `cardshare up` process.
type scaleUp struct {
	firstUp, allUp time.Duration // from exec to the first and to every guest up
	startCPU       time.Duration // the process's CPU time until every guest was up
	startMachine   time.Duration // all CPUs' busy time meanwhile
	idle           procSample    // all guests up, no client
	idleCPU        float64       // CPU share of one core while idle
	load           procSample    // the largest figures under load
	loadCPU        time.Duration // CPU time used during the load run
	after          procSample    // idle again after the load
	clients        clientsRun
	maxOpen        int64  // open client connections, summed over guests, at most
	failedConns    uint64 // status: connections closed before relaying
	stop           time.Duration
	warnings       int // log lines at WARN or ERROR
}

// scaleProcess runs `cardshare up` with a config file listing a guest per
// socket, all on s, waits until status shows all up, and measures it idle
// and under load.
func scaleProcess(b *testing.B, bin string, p *testenv.PCSCD, s *testenv.SSHD, sockets []string, apdus int) *scaleUp {
	b.Helper()
	host := p.Socket
	cs := buildCardshare(b)
	dir := sockDir(b)
	cfg := filepath.Join(dir, "config.yaml")
	ctl := filepath.Join(dir, "ctl", "control.sock")
	var y strings.Builder
	fmt.Fprintf(&y, "host:\n  backend: %s\n  pcscd_socket: %s\n  ssh_config: %s\nguests:\n", *flagScaleBackend, host, s.ConfigFile)
	for i, sock := range sockets {
		fmt.Fprintf(&y, "  - name: g%03d\n    destination: %s\n    socket: %s\n", i, s.HostAlias, sock)
	}
	if err := os.WriteFile(cfg, []byte(y.String()), 0o600); err != nil {
		b.Fatal(err)
	}

	r := &scaleUp{}
	cmd := exec.Command(cs, "up", "--config", cfg, "--control-socket", ctl)
	cmd.Env = append(os.Environ(), "PCSCLITE_CSOCK_NAME="+host)
	if *flagCLIEnv != "" {
		cmd.Env = append(cmd.Env, strings.Split(*flagCLIEnv, ",")...)
	}
	out := new(logtest.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start, busy := time.Now(), machineBusy()
	if err := cmd.Start(); err != nil {
		b.Fatalf("bench: start cardshare up: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopped := false
	b.Cleanup(func() {
		if !stopped {
			stopProcess(cmd, exited)
		}
	})
	pid := cmd.Process.Pid

	// Every guest up, as `cardshare status --json` tells.
	for {
		select {
		case <-exited:
			b.Fatalf("bench: cardshare up exited:\n%s", out)
		default:
		}
		st, err := upStatus(ctl)
		if err == nil {
			n := 0
			for _, g := range st.Guests {
				if g.State == string(forward.StateUp) {
					n++
				}
			}
			if n > 0 && r.firstUp == 0 {
				r.firstUp = time.Since(start)
			}
			if n == len(sockets) {
				r.allUp = time.Since(start)
				r.startCPU = readProcUse(pid).cpu
				r.startMachine = machineBusy() - busy
				break
			}
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("bench: not all guests up after 5 minutes: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Idle: settle, then watch the CPU over a quiet stretch.
	time.Sleep(2 * time.Second)
	r.idle = sampleProc(pid)
	time.Sleep(*flagScaleIdle)
	r.idleCPU = float64(sampleProc(pid).cpu-r.idle.cpu) / float64(*flagScaleIdle)

	before := sampleProc(pid)
	r.load = before
	var sampleErr error
	r.clients = runClients(b, bin, sockets, apdus, &cpuWatch{pcscd: p.PID, sshd: s.PID, cardshare: pid}, func() {
		r.load.maxOf(sampleProc(pid))
		st, err := upStatus(ctl)
		if err != nil {
			sampleErr = err
			return
		}
		var open int64
		for _, g := range st.Guests {
			open += g.OpenConnections
		}
		r.maxOpen = max(r.maxOpen, open)
	})
	r.loadCPU = sampleProc(pid).cpu - before.cpu
	if sampleErr != nil {
		b.Errorf("bench: status under load: %v", sampleErr)
	}

	time.Sleep(2 * time.Second)
	r.after = sampleProc(pid)
	st, err := upStatus(ctl)
	if err != nil {
		b.Fatalf("bench: status: %v", err)
	}
	for _, g := range st.Guests {
		r.failedConns += g.FailedConnections
		if g.State != string(forward.StateUp) {
			b.Errorf("bench: guest %s is %s after the load: %s", g.Name, g.State, g.LastError)
		}
	}

	stopAt := time.Now()
	stopProcess(cmd, exited)
	stopped = true
	r.stop = time.Since(stopAt)
	r.warnings = strings.Count(out.String(), "level=WARN") + strings.Count(out.String(), "level=ERROR")
	if r.warnings > 0 {
		b.Logf("cardshare up warnings:\n%s", grepLines(out.String(), "level=WARN", "level=ERROR"))
	}
	return r
}

// upGuest is the part of `cardshare status --json` (StatusV1) read here.
type upGuest struct {
	Name              string `json:"name"`
	State             string `json:"state"`
	OpenConnections   int64  `json:"open_connections"`
	FailedConnections uint64 `json:"failed_connections"`
	LastError         string `json:"last_error"`
}

// upStatus asks `cardshare up` for its status document, as `cardshare
// status --json` does, without a process per question.
func upStatus(ctl string) (*struct{ Guests []upGuest }, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, // no idle connection to count among its descriptors
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ctl)
		},
	}}
	resp, err := c.Get("http://cardshare/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var st struct{ Guests []upGuest }
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// scaleInproc is what BenchmarkScale measured of forward.Expose in the test
// process: goroutines above the count before Expose started.
type scaleInproc struct {
	allUp                      time.Duration
	idle, load, after, stopped int
	clients                    clientsRun
	stop                       time.Duration
}

func scaleInProcess(b *testing.B, bin string, p *testenv.PCSCD, s *testenv.SSHD, sockets []string, apdus int) *scaleInproc {
	b.Helper()
	host := p.Socket
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon, err := pcsc.Probe(ctx, host)
	if err != nil {
		b.Fatal(err)
	}
	target, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		b.Fatal(err)
	}
	guests := make([]forward.Guest, len(sockets))
	for i, sock := range sockets {
		guests[i] = forward.Guest{Name: fmt.Sprintf("g%03d", i), Target: target, Socket: sock}
	}
	var mu sync.Mutex
	up := map[string]bool{}
	allUp := make(chan struct{})
	var failed error
	log := new(logtest.Buffer)
	cfg := forward.DefaultConfig()
	cfg.HostSocket = host
	cfg.Daemon = daemon
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.OnEvent = func(e forward.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.State {
		case forward.StateUp:
			if !up[e.Guest] {
				up[e.Guest] = true
				if len(up) == len(guests) {
					close(allUp)
				}
			}
		case forward.StateFailed:
			failed = e.Err
		}
	}

	r := &scaleInproc{}
	runtime.GC()
	base := runtime.NumGoroutine()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- forward.Expose(ctx, guests, cfg) }()
	select {
	case <-allUp:
		r.allUp = time.Since(start)
	case <-time.After(5 * time.Minute):
		mu.Lock()
		b.Fatalf("bench: in-process: %d of %d guests up after 5 minutes (%v):\n%s", len(up), len(guests), failed, log)
	}
	time.Sleep(2 * time.Second)
	r.idle = runtime.NumGoroutine() - base
	r.clients = runClients(b, bin, sockets, apdus, &cpuWatch{pcscd: p.PID, sshd: s.PID, cardshare: os.Getpid()}, func() {
		r.load = max(r.load, runtime.NumGoroutine()-base)
	})
	time.Sleep(2 * time.Second)
	r.after = runtime.NumGoroutine() - base
	stopAt := time.Now()
	cancel()
	if err := <-done; err != nil {
		b.Errorf("bench: in-process Expose: %v", err)
	}
	r.stop = time.Since(stopAt)
	time.Sleep(time.Second)
	r.stopped = runtime.NumGoroutine() - base
	if log.String() != "" {
		b.Logf("in-process cardshare warnings:\n%s", log)
	}
	return r
}

func reportScale(b *testing.B, n, apdus int, single, direct clientsRun, up *scaleUp, in *scaleInproc) {
	var t strings.Builder
	fmt.Fprintf(&t, "\n%d guests on one sshd, one `cardshare up` process (host backend %s; %s); %d APDUs per guest client, all clients at once; %s\n\n",
		n, *flagScaleBackend, cliEnvNote(), apdus, cardDelayNote(*flagCardDelay))

	t.WriteString("| | APDU/s, all clients | × direct, same clients | per client APDU/s min / median / max | failed clients |\n|---|---:|---:|---|---:|\n")
	row := func(name string, r clientsRun, ref float64) {
		ratio := "–"
		if ref > 0 {
			ratio = formatRatio(r.perSec() / ref)
		}
		rs := r.rates()
		spread := "–"
		if len(rs) > 0 {
			spread = fmt.Sprintf("%.0f / %.0f / %.0f", rs[0], median(rs), rs[len(rs)-1])
		}
		fmt.Fprintf(&t, "| %s | %.0f | %s | %s | %d |\n", name, r.perSec(), ratio, spread, r.failed())
	}
	row("direct, 1 client", single, 0)
	row(fmt.Sprintf("direct, %d clients", n), direct, 0)
	row(fmt.Sprintf("`cardshare up`, %d guests", n), up.clients, direct.perSec())
	if in != nil {
		row(fmt.Sprintf("in-process Expose, %d guests", n), in.clients, direct.perSec())
	}
	t.WriteString("\nCPU time per APDU during each run, µs; machine is all CPUs (other users of the machine included), and cores busy its average. The test process runs the virtual card (and the in-process cardshare, whose column is then the whole test process).\n\n")
	t.WriteString("| | clients | pcscd | card (test process) | guest sshd | cardshare | machine | cores busy |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	budget := func(name string, r clientsRun) {
		per := func(d time.Duration) string {
			if d == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", float64(d.Microseconds())/float64(max(r.total(), 1)))
		}
		card := per(r.cpu.card)
		if r.cpu.cardshare == r.cpu.card {
			card = "(with cardshare)"
		}
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s | %s | %.2f |\n", name, per(r.cpu.clients), per(r.cpu.pcscd), card, per(r.cpu.sshd),
			per(r.cpu.cardshare), per(r.cpu.machine), r.cpu.machine.Seconds()/r.wall.Seconds())
	}
	budget("direct, 1 client", single)
	budget(fmt.Sprintf("direct, %d clients", n), direct)
	budget(fmt.Sprintf("`cardshare up`, %d guests", n), up.clients)
	if in != nil {
		budget(fmt.Sprintf("in-process Expose, %d guests", n), in.clients)
	}
	if rs := up.clients.rates(); len(rs) > 0 {
		fmt.Fprintf(&t, "\nslowest guest ÷ median guest: %.2f (direct clients: %.2f)\n", rs[0]/median(rs), ratioMinMedian(direct.rates()))
	}

	fmt.Fprintf(&t, "\n`cardshare up` process, from /proc/PID (RSS, threads, fds) and `status --json` (connections):\n\n")
	t.WriteString("| | RSS | threads | fds | CPU |\n|---|---:|---:|---:|---|\n")
	fmt.Fprintf(&t, "| %d guests idle | %s | %d | %d | %.2f %% of a core |\n", n, mb(up.idle.rssKB), up.idle.threads, up.idle.fds, 100*up.idleCPU)
	fmt.Fprintf(&t, "| under load (largest sample) | %s | %d | %d | %.0f %% of a core |\n", mb(up.load.rssKB), up.load.threads, up.load.fds,
		100*up.loadCPU.Seconds()/up.clients.wall.Seconds())
	fmt.Fprintf(&t, "| idle after the load | %s (peak %s) | %d | %d | |\n", mb(up.after.rssKB), mb(up.after.peakKB), up.after.threads, up.after.fds)
	fmt.Fprintf(&t, "\nstart-up: first guest up after %v, all %d after %v, using %v of cardshare CPU and %v of the machine's (%.2f cores busy): `up` resolves each guest with `ssh -G`, connects, runs the preparation script and the keeper session\n",
		up.firstUp.Round(time.Millisecond), n, up.allUp.Round(time.Millisecond), up.startCPU.Round(time.Millisecond),
		up.startMachine.Round(time.Millisecond), up.startMachine.Seconds()/up.allUp.Seconds())
	fmt.Fprintf(&t, "stop (SIGTERM; every guest socket removed): %v; %d log lines at WARN or ERROR\n", up.stop.Round(time.Millisecond), up.warnings)
	fmt.Fprintf(&t, "status under load: up to %d client connections open at once; %d connections failed\n", up.maxOpen, up.failedConns)

	if in != nil {
		fmt.Fprintf(&t, "\nin-process forward.Expose, goroutines above the count before it started:\n\n")
		t.WriteString("| idle | under load (largest sample) | idle after the load | after stop |\n|---:|---:|---:|---:|\n")
		fmt.Fprintf(&t, "| %d (%.1f per guest) | %d | %d | %d |\n", in.idle, float64(in.idle)/float64(n), in.load, in.after, in.stopped)
		fmt.Fprintf(&t, "\nin-process start-up: all %d guests up after %v (one target resolved once); stop: %v\n", n, in.allUp.Round(time.Millisecond), in.stop.Round(time.Millisecond))
	}
	fmt.Println(t.String())

	if d := *flagCardDelay; d > 0 {
		fmt.Printf("card delay %v: one reader answers at most %.0f APDU/s; direct clients reached %.0f (%.2f of that), cardshare %.2f× direct\n\n",
			d, float64(time.Second)/float64(d), direct.perSec(), direct.perSec()*d.Seconds(), up.clients.perSec()/direct.perSec())
	}
	b.ReportMetric(up.clients.perSec(), "cardshare-APDU/s")
	b.ReportMetric(direct.perSec(), "direct-APDU/s")
	b.ReportMetric(up.clients.perSec()/direct.perSec(), "cardshare-x-direct")
	b.ReportMetric(float64(up.idle.rssKB)/1024, "idle-RSS-MB")
	b.ReportMetric(float64(up.load.rssKB)/1024, "load-RSS-MB")
	b.ReportMetric(up.allUp.Seconds(), "startup-s")
	b.ReportMetric(0, "ns/op")
}

func ratioMinMedian(rs []float64) float64 {
	if len(rs) == 0 || median(rs) == 0 {
		return 0
	}
	return rs[0] / median(rs)
}

// cardDelayNote describes the card's answer time d.
func cardDelayNote(d time.Duration) string {
	if d == 0 {
		return "the card answers at once"
	}
	return fmt.Sprintf("the card takes %v per APDU", d)
}

// cliEnvNote describes the environment of the cardshare processes.
func cliEnvNote() string {
	if *flagCLIEnv == "" {
		return "GOMAXPROCS=1, its default"
	}
	return "with " + *flagCLIEnv
}

// grepLines returns the lines of text that contain any of subs.
func grepLines(text string, subs ...string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				b.WriteString(line)
				break
			}
		}
	}
	return b.String()
}
