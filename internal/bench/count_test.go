//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flagCount adds a counting pass after the timed rounds: one run of -count
// APDUs per path with every process on the path watched (the host-side
// relay, the guest's sshd or the agent, pcscd): its system calls (perf stat
// on the raw_syscalls:sys_enter tracepoint, which does not slow the calls as
// strace does), CPU time and sleeps, and the TCP segments of the path's
// loopback connections (TCP_INFO through ss). The timed rounds run without
// it.
var flagCount = flag.Int("count", 0, "after the rounds, run this many APDUs per path once more and count system calls, CPU, sleeps and TCP segments per APDU of every process on the path (needs perf and ss)")

// watched is one process of a path in the counting pass.
type watched struct {
	role string
	pid  int
}

// rolePCSCD is the host pcscd, watched on every path; its sockets are not
// the path's.
const rolePCSCD = "pcscd"

// countResult is what one process did per APDU.
type countResult struct {
	role     string
	syscalls float64
	calls    string // the largest counts by name
	cpuUS    float64
	sleeps   float64
	rw       float64 // read and write calls by /proc/PID/io, all threads
}

// pathCount is the counting pass of one path.
type pathCount struct {
	id       string
	procs    []countResult
	dataSegs float64 // TCP segments carrying data, both directions, all hops
	segs     float64 // all TCP segments, ACKs included
}

// tcpSock is one established TCP socket as ss shows it.
type tcpSock struct {
	local, peer          string
	pids                 []int
	segsOut, dataSegsOut uint64
}

// readTCPSockets parses `ss -tnpiH state established`.
func readTCPSockets() ([]tcpSock, error) {
	out, err := exec.Command("ss", "-tnpiH", "state", "established").Output()
	if err != nil {
		return nil, fmt.Errorf("ss: %w", err)
	}
	var socks []tcpSock
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(socks) == 0 {
				continue
			}
			s := &socks[len(socks)-1]
			for f := range strings.FieldsSeq(line) {
				k, v, ok := strings.Cut(f, ":")
				if !ok {
					continue
				}
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "segs_out":
					s.segsOut = n
				case "data_segs_out":
					s.dataSegsOut = n
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		s := tcpSock{local: f[2], peer: f[3]}
		if _, users, ok := strings.Cut(line, "users:"); ok {
			for _, part := range strings.Split(users, "pid=")[1:] {
				end := strings.IndexAny(part, ",)")
				if end < 0 {
					continue
				}
				if pid, err := strconv.Atoi(part[:end]); err == nil {
					s.pids = append(s.pids, pid)
				}
			}
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// pathSockets returns the loopback TCP sockets of pids and of their peers,
// and the processes at the far end of each (the guest's sshd, or the other
// relay process).
func pathSockets(pids []int) (socks []tcpSock, peers []int, err error) {
	all, err := readTCPSockets()
	if err != nil {
		return nil, nil, err
	}
	for _, s := range all {
		if !slices.ContainsFunc(s.pids, func(p int) bool { return slices.Contains(pids, p) }) {
			continue
		}
		socks = append(socks, s)
		for _, o := range all {
			if o.local == s.peer && o.peer == s.local {
				socks = append(socks, o)
				for _, p := range o.pids {
					if !slices.Contains(pids, p) && !slices.Contains(peers, p) {
						peers = append(peers, p)
					}
				}
			}
		}
	}
	// A socket appears once even when both of its ends are ours.
	slices.SortFunc(socks, func(a, b tcpSock) int { return strings.Compare(a.local+a.peer, b.local+b.peer) })
	socks = slices.CompactFunc(socks, func(a, b tcpSock) bool { return a.local == b.local && a.peer == b.peer })
	return socks, peers, nil
}

func sumSegs(socks []tcpSock) (data, all uint64) {
	for _, s := range socks {
		data += s.dataSegsOut
		all += s.segsOut
	}
	return data, all
}

// perfCount counts the system calls of pid (all its threads, and children
// started meanwhile) until stop is called.
type perfCount struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startPerfCount(pid int) (*perfCount, error) {
	p := &perfCount{}
	args := []string{"stat", "-x,", "-e", "raw_syscalls:sys_enter"}
	for _, c := range countedCalls {
		args = append(args, "-e", "syscalls:sys_enter_"+c)
	}
	p.cmd = exec.Command("perf", append(args, "-p", strconv.Itoa(pid))...)
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	return p, nil
}

// countedCalls are the system calls counted one by one.
var countedCalls = []string{"read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
	"epoll_wait", "epoll_pwait", "ppoll", "pselect6", "poll", "select", "futex", "nanosleep", "sched_yield",
	"rt_sigprocmask", "getpid", "tgkill", "clock_nanosleep"}

// stop ends the count and returns the total and the calls by name.
func (p *perfCount) stop() (uint64, map[string]uint64, error) {
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	var total uint64
	found := false
	by := make(map[string]uint64)
	for line := range strings.Lines(p.out.String()) {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch ev := strings.TrimSpace(f[2]); {
		case ev == "raw_syscalls:sys_enter":
			total, found = n, true
		case strings.HasPrefix(ev, "syscalls:sys_enter_"):
			if n > 0 {
				by[strings.TrimPrefix(ev, "syscalls:sys_enter_")] = n
			}
		}
	}
	if !found {
		return 0, nil, fmt.Errorf("perf stat: no count in %q", p.out.String())
	}
	return total, by, nil
}

// countPath runs n APDUs on pt with its processes watched. procs are the
// processes known by role; the far ends of their TCP connections join them
// as peerRole.
func countPath(b *testing.B, bin string, pt *path, n int, procs []watched, peerRole string) pathCount {
	b.Helper()
	var own []int
	for _, w := range procs {
		if w.role != rolePCSCD {
			own = append(own, w.pid)
		}
	}
	socks, peers, err := pathSockets(own)
	if err != nil {
		b.Fatalf("bench: %v", err)
	}
	for _, p := range peers {
		procs = append(procs, watched{peerRole, p})
	}
	perfs := make([]*perfCount, len(procs))
	uses := make([]procUse, len(procs))
	rws := make([]uint64, len(procs))
	for i, w := range procs {
		if perfs[i], err = startPerfCount(w.pid); err != nil {
			b.Fatalf("bench: %v", err)
		}
	}
	time.Sleep(300 * time.Millisecond) // perf attaches
	for i, w := range procs {
		uses[i] = readProcUse(w.pid)
		rws[i] = readRW(w.pid)
	}
	if dir := os.Getenv("CS_STRACE_DIR"); dir != "" {
		// Development aid: a trace of 20 APDUs of each process.
		var tr []*exec.Cmd
		for _, w := range procs {
			c := exec.Command("strace", "-f", "-tt", "-o", fmt.Sprintf("%s/%s-%s-%d.txt", dir, pt.id, strings.Fields(w.role)[0], w.pid), "-p", strconv.Itoa(w.pid))
			c.Start()
			tr = append(tr, c)
		}
		time.Sleep(500 * time.Millisecond)
		cp := *pt
		cp.pid, cp.pids = 0, nil
		runBench(b, bin, &cp, 20)
		for _, c := range tr {
			c.Process.Signal(os.Interrupt)
			c.Wait()
		}
	}
	var recs []*exec.Cmd
	if dir := os.Getenv("CS_PERF_DIR"); dir != "" {
		// Development aid: perf record of each process over the count.
		for _, w := range procs {
			if w.role == rolePCSCD {
				continue
			}
			// CS_PERF_ARGS replaces the sampling arguments, for
			// example with tracepoints: "-e sched:sched_switch".
			args := []string{"-F", "4000", "-g"}
			if a := os.Getenv("CS_PERF_ARGS"); a != "" {
				args = strings.Fields(a)
			}
			args = append(append([]string{"record"}, args...), "-o", fmt.Sprintf("%s/%s-%s-%d.data", dir, pt.id, strings.Fields(w.role)[0], w.pid), "-p", strconv.Itoa(w.pid))
			c := exec.Command("perf", args...)
			c.Start()
			recs = append(recs, c)
		}
		time.Sleep(300 * time.Millisecond)
	}
	defer func() {
		for _, c := range recs {
			c.Process.Signal(os.Interrupt)
			c.Wait()
		}
	}()
	data0, all0 := sumSegs(socks)
	cp := *pt
	cp.pid, cp.pids = 0, nil
	runBench(b, bin, &cp, n)
	socks2, _, err := pathSockets(own)
	if err != nil {
		b.Fatalf("bench: %v", err)
	}
	data1, all1 := sumSegs(socks2)
	pc := pathCount{id: pt.id, dataSegs: float64(data1-data0) / float64(n), segs: float64(all1-all0) / float64(n)}
	for i, w := range procs {
		u := readProcUse(w.pid).sub(uses[i])
		rw := readRW(w.pid) - rws[i]
		calls, by, err := perfs[i].stop()
		if err != nil || calls == 0 {
			continue // not a process that does the path's work (sshd's monitor)
		}
		pc.procs = append(pc.procs, countResult{
			role:     fmt.Sprintf("%s (%d)", w.role, w.pid),
			syscalls: float64(calls) / float64(n),
			calls:    formatCalls(by, n),
			cpuUS:    float64(u.cpu.Microseconds()) / float64(n),
			sleeps:   float64(u.voluntary) / float64(n),
			rw:       float64(rw) / float64(n),
		})
	}
	return pc
}

// printCounts prints the counting pass as a table.
func printCounts(counts []pathCount, names map[string]string, n int) {
	var t strings.Builder
	fmt.Fprintf(&t, "\ncounting pass: %d APDUs per path, after the timed rounds; per APDU. TCP segments are both directions of every loopback TCP hop of the path (data-carrying / all, ACKs included); the system calls were counted by perf stat on raw_syscalls:sys_enter, CPU and sleeps (voluntary context switches) from /proc.\n\n", n)
	t.WriteString("| path | TCP data segs | TCP segs | process | syscalls | by call | read+write (io) | CPU µs | sleeps |\n|---|---:|---:|---|---:|---|---:|---:|---:|\n")
	for _, c := range counts {
		for i, p := range c.procs {
			name, segs, all := "", "", ""
			if i == 0 {
				name = names[c.id]
				segs, all = fmt.Sprintf("%.2f", c.dataSegs), fmt.Sprintf("%.2f", c.segs)
			}
			fmt.Fprintf(&t, "| %s | %s | %s | %s | %.1f | %s | %.1f | %.0f | %.2f |\n", name, segs, all, p.role, p.syscalls, p.calls, p.rw, p.cpuUS, p.sleeps)
		}
	}
	fmt.Println(t.String())
}

// formatCalls lists the calls made at least once in ten APDUs, most first.
func formatCalls(by map[string]uint64, n int) string {
	type kv struct {
		k string
		v uint64
	}
	var l []kv
	for k, v := range by {
		if v*10 >= uint64(n) {
			l = append(l, kv{k, v})
		}
	}
	slices.SortFunc(l, func(a, b kv) int { return int(b.v) - int(a.v) })
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s %.1f", e.k, float64(e.v)/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// readRW returns the read and write system calls of pid so far, over all
// its threads, dead ones included (syscr and syscw of /proc/PID/io): a
// check on perf stat, which misses threads started after it attached.
func readRW(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n uint64
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		if k == "syscr" || k == "syscw" {
			x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}
