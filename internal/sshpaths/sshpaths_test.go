package sshpaths

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func existing(paths ...string) func(string) bool {
	return func(p string) bool { return slices.Contains(paths, p) }
}

func TestPaths(t *testing.T) {
	win := Host{GOOS: "windows", Home: `C:\Users\me`, Getenv: env(map[string]string{"ProgramData": `D:\ProgramData`})}
	mac := Host{GOOS: "darwin", Home: "/Users/me"}
	for _, tt := range []struct {
		got, want []string
	}{
		{[]string{win.UserDir(), win.UserConfig(), win.SystemConfig()}, []string{`C:\Users\me\.ssh`, `C:\Users\me\.ssh\config`, `D:\ProgramData\ssh\ssh_config`}},
		{win.UserKnownHosts(), []string{`C:\Users\me\.ssh\known_hosts`, `C:\Users\me\.ssh\known_hosts2`}},
		{win.SystemKnownHosts(), []string{`D:\ProgramData\ssh\ssh_known_hosts`, `D:\ProgramData\ssh\ssh_known_hosts2`}},
		{win.IdentityFiles()[3:4], []string{`C:\Users\me\.ssh\id_ed25519`}},
		{[]string{mac.UserDir(), mac.UserConfig(), mac.SystemConfig()}, []string{"/Users/me/.ssh", "/Users/me/.ssh/config", "/etc/ssh/ssh_config"}},
		{mac.UserKnownHosts(), []string{"/Users/me/.ssh/known_hosts", "/Users/me/.ssh/known_hosts2"}},
		{mac.SystemKnownHosts(), []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}},
		{mac.IdentityFiles(), []string{"/Users/me/.ssh/id_rsa", "/Users/me/.ssh/id_ecdsa", "/Users/me/.ssh/id_ecdsa_sk", "/Users/me/.ssh/id_ed25519", "/Users/me/.ssh/id_ed25519_sk"}},
	} {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// No %ProgramData%: Windows' default.
	win.Getenv = env(nil)
	if got := win.SystemConfig(); got != `C:\ProgramData\ssh\ssh_config` {
		t.Errorf("SystemConfig %s", got)
	}
}

const pageant = "pageant.me.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestFindAgent(t *testing.T) {
	pipes := func(names ...string) func() []string { return func() []string { return names } }
	for _, tt := range []struct {
		name string
		h    Host
		want Agent
		ok   bool
	}{
		{"SSH_AUTH_SOCK", Host{GOOS: "linux", Getenv: env(map[string]string{"SSH_AUTH_SOCK": "/run/user/1000/agent"}), Exists: existing("/run/user/1000/agent")},
			Agent{"/run/user/1000/agent", "SSH_AUTH_SOCK", true}, true},
		{"linux without", Host{GOOS: "linux", Getenv: env(nil)}, Agent{}, false},
		{"macOS launchd", Host{GOOS: "darwin", Getenv: env(nil), Exists: existing("/private/tmp/com.apple.launchd.x/Listeners"),
			LaunchdGetenv: env(map[string]string{"SSH_AUTH_SOCK": "/private/tmp/com.apple.launchd.x/Listeners"})},
			Agent{"/private/tmp/com.apple.launchd.x/Listeners", "launchd", true}, true},
		{"macOS SSH_AUTH_SOCK first", Host{GOOS: "darwin", Getenv: env(map[string]string{"SSH_AUTH_SOCK": "/tmp/a"}), LaunchdGetenv: env(map[string]string{"SSH_AUTH_SOCK": "/tmp/b"})},
			Agent{"/tmp/a", "SSH_AUTH_SOCK", false}, true},
		{"windows OpenSSH agent", Host{GOOS: "windows", User: "me", Getenv: env(nil), Pipes: pipes("InitShutdown", pageant, "openssh-ssh-agent")},
			Agent{OpenSSHAgentPipe, "Windows OpenSSH agent", true}, true},
		{"windows Pageant", Host{GOOS: "windows", User: "ME", Getenv: env(nil), Pipes: pipes("InitShutdown", pageant)},
			Agent{`\\.\pipe\` + pageant, "Pageant", true}, true},
		{"windows, another user's Pageant", Host{GOOS: "windows", User: "you", Getenv: env(nil), Pipes: pipes(pageant)},
			Agent{OpenSSHAgentPipe, "Windows OpenSSH agent", false}, true},
		{"windows, Git Bash's agent passed over", Host{GOOS: "windows", Getenv: env(map[string]string{"SSH_AUTH_SOCK": "/tmp/ssh-XXXXabcd/agent.1234"}), Pipes: pipes("openssh-ssh-agent")},
			Agent{OpenSSHAgentPipe, "Windows OpenSSH agent", true}, true},
		{"windows SSH_AUTH_SOCK pipe", Host{GOOS: "windows", Getenv: env(map[string]string{"SSH_AUTH_SOCK": "//./pipe/" + pageant}), Pipes: pipes(pageant)},
			Agent{"//./pipe/" + pageant, "SSH_AUTH_SOCK", true}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, ok := FindAgent(tt.h)
			if a != tt.want || ok != tt.ok {
				t.Errorf("FindAgent = %+v, %v; want %+v, %v", a, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPipeNames(t *testing.T) {
	for addr, want := range map[string]bool{
		`\\.\pipe\openssh-ssh-agent`: true, `//./pipe/pageant.x.y`: true, `\\.\PIPE\x`: true,
		"/tmp/agent.sock": false, `C:\Users\me\agent.sock`: false, `\\server\pipe\x`: false,
	} {
		if IsPipe(addr) != want {
			t.Errorf("IsPipe(%s) = %v", addr, !want)
		}
	}
	if got := pipeName("//./pipe/pageant.me.abc"); got != "pageant.me.abc" {
		t.Errorf("pipeName %s", got)
	}
	if got := PageantPipe("me", []string{"pageant.me.short", "pageant.mel." + strings.Repeat("a", 64)}); got != "" {
		t.Errorf("PageantPipe matched %s", got)
	}
}

func TestFindSSH(t *testing.T) {
	look := func(p string) func(string) (string, error) {
		return func(string) (string, error) {
			if p == "" {
				return "", errors.New("not found")
			}
			return p, nil
		}
	}
	sys32 := `C:\Windows\System32\OpenSSH\ssh.exe`
	git := `C:\Program Files\Git\usr\bin\ssh.exe`
	for _, tt := range []struct {
		name string
		h    Host
		want Program
		err  error
	}{
		{"unix", Host{GOOS: "darwin", LookPath: look("/usr/bin/ssh")}, Program{"/usr/bin/ssh", true}, nil},
		{"unix none", Host{GOOS: "linux", LookPath: look("")}, Program{}, ErrNoSSH},
		{"windows on PATH", Host{GOOS: "windows", LookPath: look(sys32), Getenv: env(nil)}, Program{sys32, true}, nil},
		{"windows Git's ssh first on PATH", Host{GOOS: "windows", LookPath: look(git), Getenv: env(nil), Exists: existing(sys32)}, Program{sys32, true}, nil},
		{"windows only Git's ssh", Host{GOOS: "windows", LookPath: look(git), Getenv: env(nil), Exists: existing()}, Program{git, false}, nil},
		{"windows not on PATH", Host{GOOS: "windows", LookPath: look(""), Getenv: env(map[string]string{"SystemRoot": `D:\WIN`}), Exists: existing(`D:\WIN\System32\OpenSSH\ssh.exe`)},
			Program{`D:\WIN\System32\OpenSSH\ssh.exe`, true}, nil},
		{"windows 32-bit process", Host{GOOS: "windows", LookPath: look(""), Getenv: env(nil), Exists: existing(`C:\Windows\Sysnative\OpenSSH\ssh.exe`)},
			Program{`C:\Windows\Sysnative\OpenSSH\ssh.exe`, true}, nil},
		{"windows none (Wine)", Host{GOOS: "windows", LookPath: look(""), Getenv: env(nil), Exists: existing()}, Program{}, ErrNoSSH},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := FindSSH(tt.h)
			if p != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("FindSSH = %+v, %v; want %+v, %v", p, err, tt.want, tt.err)
			}
		})
	}
}

func TestExpandProgramData(t *testing.T) {
	h := Host{GOOS: "windows", Getenv: env(map[string]string{"ProgramData": `D:\PD\`})}
	for in, want := range map[string]string{
		`__PROGRAMDATA__\ssh/ssh_known_hosts`: `D:\PD\ssh/ssh_known_hosts`,
		`~/.ssh/known_hosts`:                  `~/.ssh/known_hosts`,
		`C:\x\__PROGRAMDATA__`:                `C:\x\__PROGRAMDATA__`,
	} {
		if got := h.ExpandProgramData(in); got != want {
			t.Errorf("ExpandProgramData(%s) = %s, want %s", in, got, want)
		}
	}
	h.Getenv = env(nil)
	if got := h.ExpandProgramData(`__PROGRAMDATA__\ssh/ssh_config`); got != `C:\ProgramData\ssh/ssh_config` {
		t.Errorf("default: %s", got)
	}
}
