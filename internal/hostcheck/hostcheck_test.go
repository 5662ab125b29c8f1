package hostcheck

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/agent"

	"github.com/cardshare/cardshare/internal/sshpaths"
)

// want checks a result's status and that its message and fix contain the
// given strings.
func want(t *testing.T, r Result, s Status, msg, fix string) {
	t.Helper()
	if r.Status != s || !strings.Contains(r.Msg, msg) || !strings.Contains(r.Fix, fix) || r.Name == "" {
		t.Errorf("got %+v; want %s with %q, fix %q", r, s, msg, fix)
	}
	if (r.Status == Warn || r.Status == Fail) && r.Fix == "" && fix != "" {
		t.Errorf("%s without a fix: %+v", r.Status, r)
	}
}

func TestSmartCardService(t *testing.T) {
	ok := PCSC{Readers: []string{"Yubico YubiKey OTP+FIDO+CCID 0"}}
	want(t, SmartCardService("windows", ok, ServiceState{Known: true, Running: true, StartType: "manual"}), OK, "the Smart Card service runs", "")
	want(t, SmartCardService("windows", PCSC{EstablishCode: scardENoService}, ServiceState{}), Fail,
		"SCardSvr) is not running (SCARD_E_NO_SERVICE (0x8010001d))", "attach a reader")
	want(t, SmartCardService("windows", PCSC{EstablishCode: scardEServiceStopped}, ServiceState{Known: true, StartType: "manual"}), Fail,
		"SCARD_E_SERVICE_STOPPED", "attach a reader")
	want(t, SmartCardService("windows", PCSC{EstablishCode: scardENoService}, ServiceState{Known: true, StartType: "disabled"}), Fail,
		"disabled", "Set-Service SCardSvr -StartupType Manual")
	want(t, SmartCardService("darwin", PCSC{EstablishCode: scardENoService}, ServiceState{}), Fail, "PC/SC service is not running", "allowSmartCard")
	want(t, SmartCardService("darwin", PCSC{Err: errors.New("dlopen failed")}, ServiceState{}), Fail, "dlopen failed", "cardshare version")
	want(t, SmartCardService("windows", PCSC{EstablishCode: scardFInternalError}, ServiceState{}), Fail, "SCARD_F_INTERNAL_ERROR", "")
	want(t, SmartCardService("darwin", ok, ServiceState{}), OK, "PC/SC answers", "")
	// A build without the native backend skips PC/SC instead of failing.
	notProbed := PCSC{Err: fmt.Errorf("wrapped: %w", ErrNotProbed)}
	want(t, SmartCardService("windows", notProbed, ServiceState{Known: true, Running: true}), Skip, "no native PC/SC backend", "")
	want(t, Readers("darwin", notProbed), Skip, "needs PC/SC", "")
}

func TestReaders(t *testing.T) {
	want(t, Readers("windows", PCSC{ListCode: scardENoReaders}), Warn, "no reader", "attach a reader")
	want(t, Readers("darwin", PCSC{}), Warn, "no reader", "Apple's own CCID driver")
	want(t, Readers("windows", PCSC{EstablishCode: scardENoService}), Skip, "needs PC/SC", "")
	want(t, Readers("windows", PCSC{ListCode: 0x80100099}), Fail, "0x80100099", "")
	want(t, Readers("darwin", PCSC{Readers: []string{"Yubico YubiKey OTP+FIDO+CCID", "Alcor Micro AU9540"}}), OK,
		"2 reader(s): Yubico YubiKey OTP+FIDO+CCID; Alcor Micro AU9540", "")
}

func TestMacOSVersion(t *testing.T) {
	for v, s := range map[string]Status{"14.2.1": Warn, "14.0": Warn, "14.3": OK, "13.6.7": OK, "15": OK, "26.1": OK, "": Skip, "x.y": Skip} {
		if r := MacOSVersion(v); r.Status != s {
			t.Errorf("%q: %+v, want %s", v, r, s)
		}
	}
	want(t, MacOSVersion("14.1"), Warn, "SCardControl", "14.3")
}

func TestAgent(t *testing.T) {
	winAgent := sshpaths.Agent{Addr: sshpaths.OpenSSHAgentPipe, Source: "Windows OpenSSH agent"}
	notRunning := fmt.Errorf("%w: x", sshpaths.ErrAgentNotRunning)
	want(t, Agent("linux", AgentProbe{}), Warn, "no ssh-agent", "ssh-add")
	want(t, Agent("windows", AgentProbe{Agent: winAgent, Found: true, DialErr: notRunning}), Warn,
		`\\.\pipe\openssh-ssh-agent (Windows OpenSSH agent) is not running`, "Set-Service -StartupType Automatic")
	want(t, Agent("windows", AgentProbe{Agent: sshpaths.Agent{Addr: `\\.\pipe\pageant.me.x`, Source: "Pageant"}, Found: true, DialErr: errors.New("access denied")}), Warn,
		"does not answer", "Pageant")
	want(t, Agent("darwin", AgentProbe{Agent: sshpaths.Agent{Addr: "/private/tmp/l", Source: "launchd"}, Found: true, DialErr: notRunning}), Warn,
		"not running", "launchctl getenv")
	want(t, Agent("linux", AgentProbe{Agent: sshpaths.Agent{Addr: "/tmp/a", Source: "SSH_AUTH_SOCK"}, Found: true, DialErr: notRunning}), Warn,
		"not running", "dead agent")
	want(t, Agent("darwin", AgentProbe{Agent: sshpaths.Agent{Addr: "/tmp/a", Source: "SSH_AUTH_SOCK"}, Found: true}), Warn,
		"holds no keys", "--apple-use-keychain")
	want(t, Agent("windows", AgentProbe{Agent: winAgent, Found: true, Keys: 2}), OK, "holds 2 key(s)", "")
}

// ProbeAgent against a real agent on a Unix socket.
func TestProbeAgent(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent")
	ln, err := net.Listen("unix", sock)
	if err != nil && runtime.GOOS == "windows" {
		t.Skipf("no AF_UNIX here (Wine has none): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	kr := agent.NewKeyring()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	kr.Add(agent.AddedKey{PrivateKey: key})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	h := sshpaths.Host{GOOS: "linux", Getenv: func(k string) string {
		if k == "SSH_AUTH_SOCK" {
			return sock
		}
		return ""
	}, Exists: func(string) bool { return true }}
	want(t, Agent("linux", ProbeAgent(context.Background(), h)), OK, "holds 1 key(s)", "")

	ln.Close()
	want(t, Agent("linux", ProbeAgent(context.Background(), h)), Warn, "is not running", "dead agent")
}

func TestSSHProgram(t *testing.T) {
	want(t, SSHProgram("windows", sshpaths.Program{}, sshpaths.ErrNoSSH), Warn, "no ssh program", "Add-WindowsCapability")
	want(t, SSHProgram("windows", sshpaths.Program{Path: `C:\Program Files\Git\usr\bin\ssh.exe`}, nil), Warn, "MSYS", "OpenSSH.Client")
	want(t, SSHProgram("windows", sshpaths.Program{Path: `C:\Windows\System32\OpenSSH\ssh.exe`, Native: true}, nil), OK, `System32\OpenSSH`, "")
	want(t, SSHProgram("darwin", sshpaths.Program{}, sshpaths.ErrNoSSH), Warn, "no ssh program", "OpenSSH's client")
}

func TestWSL(t *testing.T) {
	for conf, mode := range map[string]string{
		"":                                      "nat",
		"[wsl2]\nmemory=8GB\n":                  "nat",
		"[wsl2]\r\nnetworkingMode=mirrored\r\n": "mirrored",
		"[wsl2]\nnetworkingMode = Mirrored # since 22H2\n": "mirrored",
		"[experimental]\nnetworkingMode=mirrored\n":        "nat",
		"[wsl2]\nnetworkingMode=virtioproxy\n":             "virtioproxy",
	} {
		if got := WSLNetworking([]byte(conf)); got != mode {
			t.Errorf("%q: %s, want %s", conf, got, mode)
		}
	}
	want(t, WSL([]byte("[wsl2]\nnetworkingMode=mirrored\n"), 7777), OK, "127.0.0.1:7777", "")
	want(t, WSL(nil, 7777), OK, "default gateway", "Firewall")
	want(t, WSL([]byte("[wsl2]\nnetworkingMode=bridged\n"), 7777), Warn, "bridged", "")
}

func TestChecks(t *testing.T) {
	line := func(rs []Result) string {
		var b strings.Builder
		for _, r := range rs {
			fmt.Fprintf(&b, "%s %s|", r.Status, r.Name)
		}
		return b.String()
	}
	win := Inputs{GOOS: "windows", PCSC: PCSC{EstablishCode: scardENoService}, SmartCardService: ServiceState{Known: true, StartType: "manual"},
		Agent: AgentProbe{Found: true, Agent: sshpaths.Agent{Addr: sshpaths.OpenSSHAgentPipe, Source: "Windows OpenSSH agent"}, DialErr: sshpaths.ErrAgentNotRunning},
		SSH:   sshpaths.Program{Path: `C:\Windows\System32\OpenSSH\ssh.exe`, Native: true}, WSL: true}
	if got, want := line(Checks(win)), "FAIL PC/SC service|SKIP readers|OK ssh program|WARN ssh-agent|OK WSL2|"; got != want {
		t.Errorf("windows: %s\nwant     %s", got, want)
	}
	mac := Inputs{GOOS: "darwin", PCSC: PCSC{ListCode: scardENoReaders}, MacOSVersion: "14.2",
		Agent: AgentProbe{Found: true, Agent: sshpaths.Agent{Addr: "/private/tmp/x/Listeners", Source: "launchd"}, Keys: 1},
		SSH:   sshpaths.Program{Path: "/usr/bin/ssh", Native: true}}
	if got, want := line(Checks(mac)), "OK PC/SC service|WARN readers|WARN macOS|OK ssh program|OK ssh-agent|"; got != want {
		t.Errorf("macOS: %s\nwant   %s", got, want)
	}
}

func TestGather(t *testing.T) {
	h := sshpaths.Host{GOOS: "linux", Getenv: func(string) string { return "" },
		LookPath: func(string) (string, error) { return "/usr/bin/ssh", nil }}
	in := Gather(context.Background(), h, PCSC{Readers: []string{"r"}}, 0)
	if in.GOOS != "linux" || in.Agent.Found || in.SSH.Path != "/usr/bin/ssh" || in.SSHErr != nil || len(in.PCSC.Readers) != 1 {
		t.Errorf("inputs %+v", in)
	}
	if got := len(Checks(in)); got != 4 {
		t.Errorf("%d checks on Linux, want 4", got)
	}
}
