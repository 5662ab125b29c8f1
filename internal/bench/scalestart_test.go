//go:build linux

package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	flagStartAliases = flag.Bool("start-aliases", true, "BenchmarkScaleStart: one ssh_config Host alias per guest, as users write them, instead of one alias for all")
	flagStartSSHD    = flag.String("start-sshd", "MaxStartups 1000", "BenchmarkScaleStart: sshd_config lines (comma-separated) for the one sshd; \"MaxStartups 10:30:100\" is OpenSSH's default")
	flagStartLog     = flag.String("start-log", "", "BenchmarkScaleStart: run `cardshare up -v` and write its whole log to this file (each guest's steps, timed)")
)

// BenchmarkScaleStart starts `cardshare up` with -scale-guests guests on
// one sshd and measures how long the guest sockets take to appear (and all
// guests to show up in the status), then stops it with SIGTERM and counts
// the guest sockets left behind (issue 13, item 10). It runs once whatever
// b.N is: go test -run '^$' -bench ScaleStart -benchtime 1x ./internal/bench.
func BenchmarkScaleStart(b *testing.B) {
	n := *flagScaleGuests
	p := testenv.StartPCSCD(b)
	var sshdConf []string
	if *flagStartSSHD != "" {
		sshdConf = strings.Split(*flagStartSSHD, ",")
	}
	s := testenv.StartSSHD(b, testenv.SSHDOptions{Config: sshdConf})
	s.Run(b, "mkdir -m 700 scale")
	cs := buildCardshare(b)
	dir := sockDir(b)

	sshConfig := s.ConfigFile
	dest := func(int) string { return s.HostAlias }
	if *flagStartAliases {
		one, err := os.ReadFile(s.ConfigFile)
		if err != nil {
			b.Fatal(err)
		}
		body := strings.SplitN(string(one), "\n", 2)[1] // after "Host guest"
		var c strings.Builder
		for i := range n {
			fmt.Fprintf(&c, "Host g%03d\n%s", i, body)
		}
		sshConfig = filepath.Join(dir, "ssh_config")
		if err := os.WriteFile(sshConfig, []byte(c.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		dest = func(i int) string { return fmt.Sprintf("g%03d", i) }
	}
	sockets := make([]string, n)
	out := new(logtest.Buffer)
	var y strings.Builder
	fmt.Fprintf(&y, "host:\n  pcscd_socket: %s\n  ssh_config: %s\nguests:\n", p.Socket, sshConfig)
	for i := range sockets {
		sockets[i] = filepath.Join(s.Home, "scale", fmt.Sprintf("g%03d.comm", i))
		fmt.Fprintf(&y, "  - name: g%03d\n    destination: %s\n    socket: %s\n", i, dest(i), sockets[i])
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(y.String()), 0o600); err != nil {
		b.Fatal(err)
	}

	ctl := filepath.Join(dir, "ctl", "control.sock")
	args := []string{"up", "--config", cfg, "--control-socket", ctl}
	if *flagStartLog != "" {
		args = append(args, "-v")
		b.Cleanup(func() { os.WriteFile(*flagStartLog, []byte(out.String()), 0o644) })
	}
	cmd := exec.Command(cs, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	load := loadAverage()
	start, busy := time.Now(), machineBusy()
	sshdCPU := treeCPU(s.PID)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() { stopProcess(cmd, exited) })

	present := func() int {
		k := 0
		for _, sock := range sockets {
			if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				k++
			}
		}
		return k
	}
	var allSockets, allUp time.Duration
	var cpuLine string
	for allSockets == 0 || allUp == 0 {
		select {
		case <-exited:
			b.Fatalf("cardshare up exited:\n%s", out)
		default:
		}
		if allSockets == 0 && present() == n {
			allSockets = time.Since(start)
			// Where the machine's CPU went until then: cardshare (with
			// its ssh -G children), the sshd (with its connections and
			// sessions), and the rest of the machine.
			cs, sd, all := treeCPU(cmd.Process.Pid), treeCPU(s.PID)-sshdCPU, machineBusy()-busy
			cpuLine = fmt.Sprintf("CPU until then: cardshare %v, sshd %v, rest of the machine %v (%.1f of 2 cores); load average at start %s",
				cs.Round(10*time.Millisecond), sd.Round(10*time.Millisecond), (all - cs - sd).Round(10*time.Millisecond),
				all.Seconds()/allSockets.Seconds(), load)
		}
		if st, err := upStatus(ctl); err == nil && allUp == 0 {
			k := 0
			for _, g := range st.Guests {
				if g.State == "up" {
					k++
				}
			}
			if k == n {
				allUp = time.Since(start)
			}
		}
		if time.Since(start) > 3*time.Minute {
			b.Fatalf("after 3 minutes: %d of %d sockets\n%s", present(), n, grepLines(out.String(), "level=WARN", "level=ERROR"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	time.Sleep(time.Second)
	stopAt := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		b.Errorf("cardshare up still running 30 s after SIGTERM")
	}
	stopped := time.Since(stopAt)
	left := present()
	aliases := "one alias"
	if *flagStartAliases {
		aliases = fmt.Sprintf("%d aliases", n)
	}
	fmt.Printf("scale-start: %d guests (%s; sshd %q): all sockets after %v, all up after %v; SIGTERM: exit after %v, %d of %d sockets left\n",
		n, aliases, *flagStartSSHD, allSockets.Round(time.Millisecond), allUp.Round(time.Millisecond), stopped.Round(time.Millisecond), left, n)
	fmt.Printf("scale-start: %s\n", cpuLine)
	if w := grepLines(out.String(), "level=WARN", "level=ERROR"); w != "" {
		lines := strings.Split(w, "\n")
		fmt.Printf("scale-start: %d warnings/errors, first: %s\n", len(lines), lines[0])
	}
	b.ReportMetric(allSockets.Seconds(), "s-sockets")
	b.ReportMetric(float64(left), "sockets-left")
}

// BenchmarkScaleStartInProcess is the start of BenchmarkScaleStart's guests
// with forward.Expose in the test process and one target resolved once,
// the shape of BenchmarkScale's in-process run.
func BenchmarkScaleStartInProcess(b *testing.B) {
	n := *flagScaleGuests
	p := testenv.StartPCSCD(b)
	s := testenv.StartSSHD(b, testenv.SSHDOptions{Config: strings.Split(*flagStartSSHD, ",")})
	s.Run(b, "mkdir -m 700 scale")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemon, err := pcsc.Probe(ctx, p.Socket)
	if err != nil {
		b.Fatal(err)
	}
	target, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		b.Fatal(err)
	}
	guests := make([]forward.Guest, n)
	for i := range guests {
		guests[i] = forward.Guest{Name: fmt.Sprintf("g%03d", i), Target: target, Socket: filepath.Join(s.Home, "scale", fmt.Sprintf("g%03d.comm", i))}
	}
	var mu sync.Mutex
	up := map[string]bool{}
	allUp := make(chan struct{})
	cfg := forward.DefaultConfig()
	cfg.HostSocket, cfg.Daemon = p.Socket, daemon
	cfg.OnEvent = func(e forward.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.State == forward.StateUp && !up[e.Guest] {
			up[e.Guest] = true
			if len(up) == n {
				close(allUp)
			}
		}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- forward.Expose(ctx, guests, cfg) }()
	select {
	case <-allUp:
	case <-time.After(3 * time.Minute):
		b.Fatal("not all up after 3 minutes")
	}
	fmt.Printf("scale-start in-process: %d guests up after %v\n", n, time.Since(start).Round(time.Millisecond))
	cancel()
	<-done
}

// treeCPU is the CPU time of pid and of its descendants, live or reaped
// (utime, stime, cutime and cstime of each live one).
func treeCPU(pid int) time.Duration {
	var t time.Duration
	for _, p := range append(descendants(pid), pid) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:])) // f[0] is field 3, state
		if len(f) < 15 {
			continue
		}
		for _, v := range f[11:15] { // utime stime cutime cstime
			n, _ := strconv.ParseInt(v, 10, 64)
			t += time.Duration(n) * time.Second / 100 // USER_HZ
		}
	}
	return t
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
