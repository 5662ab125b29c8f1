package testenv

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshdPath is absolute because sshd re-executes itself for each connection.
const sshdPath = "/usr/sbin/sshd"

// gecosTag marks users created here, with the creating test process's PID,
// so that users left behind by a crashed test binary can be removed.
const gecosTag = "cardshare testenv pid "

// SSHDOptions configures StartSSHD. The zero value is usable.
type SSHDOptions struct {
	// Config holds extra sshd_config lines. Lines before the first "Match"
	// are written before the harness's defaults and so override them (sshd
	// keeps the first value it reads); a Match line and all after it go last.
	Config []string
	// HostKeyTypes are the host keys to generate, in HostKey order:
	// "ed25519", "ecdsa". Empty means ed25519 only. KnownHosts lists all.
	HostKeyTypes []string
	// HostAlias is the Host entry written to ConfigFile; "" means "guest".
	HostAlias string
}

// SSHD is a running OpenSSH server on 127.0.0.1 with a fresh unprivileged
// user, for integration tests. It needs root, /usr/sbin/sshd and useradd;
// StartSSHD skips the test otherwise. Cleanup stops every process of the
// instance by PID, removes the user and deletes Dir.
type SSHD struct {
	Addr      string // 127.0.0.1:Port
	Port      int
	User      string // login name, "csg" and 6 random characters
	Home      string // Dir/User, owned by the user, mode 0755
	UID, GID  int
	Dir       string // short temporary base directory (/tmp/cshNNN)
	HostAlias string // Host entry in ConfigFile

	// ConfigFile is a client ssh_config with a HostAlias entry that sets
	// HostName, Port, User, IdentityFile, IdentitiesOnly, IdentityAgent none
	// and UserKnownHostsFile, for sshdial.Resolve and /usr/bin/ssh -F.
	ConfigFile string
	// ServerConfig is the sshd_config file.
	ServerConfig string
	// KnownHosts has an entry for [127.0.0.1]:Port per host key.
	KnownHosts string
	// ClientKey is the unencrypted ed25519 key authorized for User.
	ClientKey string
	// HostKeys are the host public keys in authorized_keys format, in
	// HostKey order.
	HostKeys []string
	// PID is the listening sshd; Restart changes it.
	PID int

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	logFile string
}

// StartSSHD starts sshd -D -e on a free port and registers its cleanup.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "testenv: StartSSHD needs root")
	}
	for _, p := range []string{sshdPath, "/usr/sbin/useradd", "/usr/sbin/userdel"} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, "testenv: StartSSHD needs "+p+"\ntestenv: hint: "+installTestDepsHint)
		}
	}
	reapStaleUsersOnce.Do(reapStaleUsers)
	// The privilege separation directory; Debian's unit creates it at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{HostAlias: opts.HostAlias}
	if s.HostAlias == "" {
		s.HostAlias = "guest"
	}
	dir, err := os.MkdirTemp("/tmp", "csh")
	if err != nil {
		t.Fatal(err)
	}
	s.Dir = dir
	s.logFile = filepath.Join(dir, "sshd.log")
	t.Cleanup(func() { s.cleanup(t) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.createUser(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeKeys(opts.HostKeyTypes); err != nil {
		t.Fatal(err)
	}
	// A port picked now can be taken before sshd binds it; retry then.
	for attempt := 0; ; attempt++ {
		if s.Port, err = freeTCPPort(); err != nil {
			t.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err = s.writeConfigs(opts); err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(s.Log(), "Address already in use") {
			t.Fatalf("testenv: start sshd: %v\nsshd log:\n%s", err, s.Log())
		}
	}
	return s
}

func (s *SSHD) createUser() error {
	var out []byte
	var err error
	// useradd fails while another process holds /etc/passwd's lock, e.g. a
	// parallel test binary: retry, with a new name in case of a clash.
	for range 30 {
		s.User = "csg" + randomSuffix(6)
		s.Home = filepath.Join(s.Dir, s.User)
		out, err = exec.Command("/usr/sbin/useradd", "-M", "-U", "-d", s.Home, "-s", "/bin/sh",
			"-p", "*", // not "!": with UsePAM no, sshd refuses locked accounts
			"-c", gecosTag+strconv.Itoa(os.Getpid()), s.User).CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(time.Duration(50+mrand.IntN(100)) * time.Millisecond)
	}
	if err != nil {
		s.User = ""
		return fmt.Errorf("testenv: useradd: %v: %s", err, out)
	}
	u, err := user.Lookup(s.User)
	if err != nil {
		return err
	}
	s.UID, _ = strconv.Atoi(u.Uid)
	s.GID, _ = strconv.Atoi(u.Gid)
	// StrictModes: home and ~/.ssh owned by the user, not group/world writable.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{s.Home, 0o755}, {filepath.Join(s.Home, ".ssh"), 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chown(d.path, s.UID, s.GID); err != nil {
			return err
		}
	}
	return nil
}

// writeKeys generates the host keys and the client key, and authorizes the
// client key for the user.
func (s *SSHD) writeKeys(types []string) error {
	if len(types) == 0 {
		types = []string{"ed25519"}
	}
	if err := os.Mkdir(filepath.Join(s.Dir, "etc"), 0o755); err != nil {
		return err
	}
	for _, typ := range types {
		pub, err := writeSSHKey(filepath.Join(s.Dir, "etc", "ssh_host_"+typ+"_key"), typ)
		if err != nil {
			return err
		}
		s.HostKeys = append(s.HostKeys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))))
	}
	s.ClientKey = filepath.Join(s.Dir, "etc", "client_ed25519")
	pub, err := writeSSHKey(s.ClientKey, "ed25519")
	if err != nil {
		return err
	}
	ak := filepath.Join(s.Home, ".ssh", "authorized_keys")
	if err := os.WriteFile(ak, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		return err
	}
	return os.Chown(ak, s.UID, s.GID)
}

// writeKey writes a new unencrypted private key (0600) and its .pub.
func writeSSHKey(path, typ string) (ssh.PublicKey, error) {
	var k crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("testenv: unknown key type %q", typ)
	}
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(k, "cardshare-testenv")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return pub, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
}

func (s *SSHD) writeConfigs(opts SSHDOptions) error {
	var pre, post []string
	for i, l := range opts.Config {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			post = opts.Config[i:]
			break
		}
		pre = append(pre, l)
	}
	var b strings.Builder
	for _, l := range pre {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "Port %d\nListenAddress 127.0.0.1\n", s.Port)
	for _, typ := range sshdHostKeyTypes(opts.HostKeyTypes) {
		fmt.Fprintf(&b, "HostKey %s\n", filepath.Join(s.Dir, "etc", "ssh_host_"+typ+"_key"))
	}
	fmt.Fprintf(&b, `PidFile none
UsePAM no
StrictModes yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers %s
AuthorizedKeysFile .ssh/authorized_keys
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
LogLevel VERBOSE
MaxStartups 100
`, s.User)
	for _, l := range post {
		b.WriteString(l + "\n")
	}
	s.ServerConfig = filepath.Join(s.Dir, "etc", "sshd_config")
	if err := os.WriteFile(s.ServerConfig, []byte(b.String()), 0o644); err != nil {
		return err
	}

	var kh strings.Builder
	for _, k := range s.HostKeys {
		fmt.Fprintf(&kh, "[127.0.0.1]:%d %s\n", s.Port, k)
	}
	s.KnownHosts = filepath.Join(s.Dir, "etc", "known_hosts")
	if err := os.WriteFile(s.KnownHosts, []byte(kh.String()), 0o644); err != nil {
		return err
	}
	s.ConfigFile = filepath.Join(s.Dir, "etc", "ssh_config")
	cfg := fmt.Sprintf(`Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
`, s.HostAlias, s.Port, s.User, s.ClientKey, s.KnownHosts)
	return os.WriteFile(s.ConfigFile, []byte(cfg), 0o644)
}

func sshdHostKeyTypes(t []string) []string {
	if len(t) == 0 {
		return []string{"ed25519"}
	}
	return t
}

// start runs sshd and waits until it sends its SSH banner.
func (s *SSHD) start() error {
	// An *os.File, not a pipe: the per-connection children inherit it, and
	// with a pipe cmd.Wait would wait for every session to end.
	logf, err := os.OpenFile(s.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", s.ServerConfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Stop the listener if the test binary dies without running cleanups.
	cmd.SysProcAttr = killWithParent()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.PID = cmd, done, cmd.Process.Pid
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %v", cmd.ProcessState)
		default:
		}
		if sshBanner(s.Addr) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("sshd sent no banner within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// Kill sends sig to the listening sshd (e.g. SIGKILL, SIGSTOP, SIGCONT).
// Established sessions are separate processes and are not affected.
func (s *SSHD) Kill(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil && !exited(s.done) { // a reaped PID may belong to another process
		kill(s.PID, sig)
	}
}

func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// KillSessions sends sig to the per-connection sshd processes of this
// instance and everything they run, e.g. SIGKILL to simulate the guest's
// sshd dying mid-transmission, or SIGSTOP to make it hang. It returns the
// number of processes signalled.
func (s *SSHD) KillSessions(sig syscall.Signal) int {
	s.mu.Lock()
	listener := s.PID
	s.mu.Unlock()
	// Look again after signalling: a monitor may have forked the session
	// process between the scan and the signal (it forks only after the
	// client has been told that authentication succeeded).
	done := map[int]bool{}
	for range 10 {
		_, pids := s.sessionTree(listener)
		n := 0
		for _, pid := range pids {
			if !done[pid] {
				kill(pid, sig)
				done[pid] = true
				n++
			}
		}
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return len(done)
}

// Restart stops the listening sshd and starts it again on the same port
// with the same keys and config, as a guest's `systemctl restart ssh`
// would: established sessions survive.
func (s *SSHD) Restart(t testing.TB) {
	t.Helper()
	s.stopListener(syscall.SIGTERM)
	s.appendLog("--- testenv: restart ---\n")
	if err := s.start(); err != nil {
		t.Fatalf("testenv: restart sshd: %v\nsshd log:\n%s", err, s.Log())
	}
}

// stopListener signals the listener (continuing it if stopped) and waits,
// using SIGKILL if it does not exit within 5 s.
func (s *SSHD) stopListener(sig syscall.Signal) {
	s.mu.Lock()
	pid, done := s.PID, s.done
	s.mu.Unlock()
	if done == nil || exited(done) {
		return
	}
	kill(pid, sig)
	kill(pid, sigCont)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		kill(pid, syscall.SIGKILL)
		<-done
	}
}

// Run runs a shell command as the user in Home, directly rather than
// through sshd (so it works while sshd is stopped), and returns its
// standard output. The test fails if the command does.
func (s *SSHD) Run(t testing.TB, command string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = s.Home
	cmd.Env = []string{"HOME=" + s.Home, "USER=" + s.User, "LOGNAME=" + s.User, "SHELL=/bin/sh",
		"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.SysProcAttr = asUser(s.UID, s.GID)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: run %q as %s: %v\nstdout: %s\nstderr: %s", command, s.User, err, out, stderr.Bytes())
	}
	return string(out)
}

// SSH runs a command through /usr/bin/ssh -F ConfigFile HostAlias and
// returns its standard output; the test fails if ssh or the command does.
func (s *SSHD) SSH(t testing.TB, command string) string {
	t.Helper()
	cmd := exec.Command("ssh", "-F", s.ConfigFile, "-T", s.HostAlias, command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: ssh %s %q: %v\nstderr: %s\nsshd log:\n%s", s.HostAlias, command, err, stderr.Bytes(), s.Log())
	}
	return string(out)
}

// Log returns what sshd has logged so far.
func (s *SSHD) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

func (s *SSHD) appendLog(text string) {
	if f, err := os.OpenFile(s.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		f.WriteString(text)
		f.Close()
	}
}

func (s *SSHD) cleanup(t testing.TB) {
	if s.User != "" {
		s.mu.Lock()
		listener := s.PID
		s.mu.Unlock()
		// Kill the session processes before their monitors and the monitors
		// before the listener, so that each is reaped by a live parent:
		// orphans go to PID 1, which in containers may reap late or never.
		roots, pids := s.sessionTree(listener)
		for _, pid := range pids {
			if roots[pid] {
				kill(pid, sigCont) // a stopped monitor cannot reap
			} else {
				kill(pid, syscall.SIGKILL)
			}
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, left := s.sessionTree(listener); len(left) == 0 {
				break
			}
		}
	}
	if s.done != nil {
		s.stopListener(syscall.SIGKILL)
	}
	if s.User != "" {
		// Kill until nothing of the instance is left, in case of forks.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			_, pids := s.sessionTree(0)
			pids = append(pids, pidsOfUID(s.UID)...)
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				kill(pid, syscall.SIGKILL)
			}
		}
		if err := deleteUser(s.User); err != nil {
			t.Errorf("testenv: %v", err)
		}
	}
	if t.Failed() {
		t.Logf("sshd log (%s):\n%s", s.ServerConfig, s.Log())
	}
	os.RemoveAll(s.Dir)
}

func deleteUser(name string) error {
	var out []byte
	var err error
	for range 30 {
		// -f: a zombie still owned by the user must not block the removal.
		if out, err = exec.Command("/usr/sbin/userdel", "-f", name).CombinedOutput(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("userdel %s: %v: %s", name, err, out)
}

// procEntry is what sessionTree needs to know about a process.
type procEntry struct {
	pid, ppid, uid int
	sshd           bool // its executable is sshd
}

func procTable() map[int]procEntry {
	ents, _ := os.ReadDir("/proc")
	ps := make(map[int]procEntry, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := procEntry{pid: pid, uid: -1}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name may contain spaces and parentheses: skip it.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			f := strings.Fields(string(stat[i+1:]))
			if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
				continue // dead: nothing to signal, and its UID is stale
			}
			p.ppid, _ = strconv.Atoi(f[1])
		}
		// The real UID from status: /proc/PID is owned by root for
		// non-dumpable processes such as sshd's privilege-separated child.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			if _, rest, ok := bytes.Cut(st, []byte("\nUid:")); ok {
				if f := strings.Fields(string(rest)); len(f) > 0 {
					p.uid, _ = strconv.Atoi(f[0])
				}
			}
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		p.sshd = strings.HasPrefix(exe, sshdPath)
		ps[pid] = p
	}
	return ps
}

// sessionTree returns this instance's per-connection processes: the
// children of the listener (pid 0 = none), and the privileged monitor of
// every process running as the user under an sshd (it survives a Restart,
// reparented), each with all its descendants. roots are those tops.
func (s *SSHD) sessionTree(listener int) (roots map[int]bool, pids []int) {
	ps := procTable()
	roots = map[int]bool{}
	for _, p := range ps {
		switch {
		case listener != 0 && p.ppid == listener:
			roots[p.pid] = true
		case p.uid == s.UID:
			if parent, ok := ps[p.ppid]; ok && parent.sshd && parent.uid == 0 && parent.pid != listener {
				roots[parent.pid] = true
			} else if p.sshd {
				roots[p.pid] = true
			}
		}
	}
	children := map[int][]int{}
	for _, p := range ps {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var walk func(int)
	walk = func(pid int) {
		pids = append(pids, pid)
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for pid := range roots {
		walk(pid)
	}
	return roots, pids
}

func pidsOfUID(uid int) []int {
	var out []int
	for _, p := range procTable() {
		if p.uid == uid {
			out = append(out, p.pid)
		}
	}
	return out
}

var reapStaleUsersOnce sync.Once

// reapStaleUsers removes users that an earlier test process created and
// could not clean up (killed by a timeout, say), with their processes and
// base directories.
func reapStaleUsers() {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || !strings.HasPrefix(f[0], "csg") || !strings.HasPrefix(f[4], gecosTag) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[4], gecosTag))
		if err != nil || kill(pid, 0) != syscall.ESRCH {
			continue // its test process is still running
		}
		uid, _ := strconv.Atoi(f[2])
		for _, p := range pidsOfUID(uid) {
			kill(p, syscall.SIGKILL)
		}
		deleteUser(f[0])
		if base := filepath.Dir(f[5]); strings.HasPrefix(base, "/tmp/csh") {
			os.RemoveAll(base)
		}
	}
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// skipOrFail skips a test that lacks what the harness needs on a developer
// machine, but fails it in CI (CI=true), where every test must run.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
