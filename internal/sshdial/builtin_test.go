package sshdial

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/sshpaths"
)

// builtinEnv is testEnv with its home in a temp dir holding the named key
// files (as .pub only: keys an agent holds count too).
func builtinEnv(t *testing.T, keys ...string) localEnv {
	t.Helper()
	env := testEnv
	env.home = t.TempDir()
	if err := os.MkdirAll(filepath.Join(env.home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(env.home, ".ssh", k+".pub"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// Without any ssh_config: OpenSSH's defaults for the OS.
func TestResolveWithoutSSHDefaults(t *testing.T) {
	env := builtinEnv(t, "id_ecdsa")
	_, empty := writeConfig(t, "empty", "")
	got, err := resolveWithoutSSH(context.Background(), "bob@[::1]:2200", empty, 0, env)
	if err != nil {
		t.Fatal(err)
	}
	ssh := filepath.Join(env.home, ".ssh")
	want := Target{
		Alias: "bob@[::1]:2200", User: "bob", HostName: "::1", Port: 2200,
		IdentityFiles:         []string{filepath.Join(ssh, "id_ecdsa")},
		IdentityAgent:         "/tmp/agent.sock",
		KnownHostsFiles:       []string{filepath.Join(ssh, "known_hosts"), filepath.Join(ssh, "known_hosts2")},
		GlobalKnownHostsFiles: []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"},
		StrictHostKeyChecking: "ask",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resolveWithoutSSH:\n got %+v\nwant %+v", got, want)
	}
	if got.Addr() != "[::1]:2200" {
		t.Errorf("Addr() = %q", got.Addr())
	}
	got, err = resolveWithoutSSH(context.Background(), "myvm", empty, 0, env)
	if err != nil || got.User != "root" || got.Port != 22 || got.HostName != "myvm" {
		t.Errorf("resolveWithoutSSH(myvm) = %+v, %v", got, err)
	}
}

const builtinConfig = `# a config as people write them
Host other
  HostName wrong.example
Host myvm* !myvm-old
  HostName=192.0.2.7
  Port 2222
  User dev
  IdentityFile ~/.ssh/vm_key
  IdentityFile "%d/.ssh/second key"
  UserKnownHostsFile %DIR%/kh %DIR%/kh2
  IdentityAgent none
Match host 192.0.2.7 user dev
  StrictHostKeyChecking accept-new
Match exec "false"
  Port 1
Match originalhost jump
  HostName 198.51.100.1
  User hop
Host *.proxied
  ProxyCommand nc %h %p
Host *
  User fallback
  Port 9
  Include %DIR%/inc.conf
`

func TestResolveWithoutSSHConfig(t *testing.T) {
	env := builtinEnv(t, "vm_key", "second key", "inc_key", "id_ed25519")
	dir, cfg := writeConfig(t, "config", builtinConfig)
	if err := os.WriteFile(filepath.Join(dir, "inc.conf"), []byte("ConnectTimeout 7\nIdentityFile ~/.ssh/inc_key\nProxyJump none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ssh := filepath.Join(env.home, ".ssh")
	ctx := context.Background()

	got, err := resolveWithoutSSH(ctx, "myvm", cfg, 0, env)
	if err != nil {
		t.Fatal(err)
	}
	want := Target{
		Alias: "myvm", User: "dev", HostName: "192.0.2.7", Port: 2222,
		IdentityFiles:         []string{filepath.Join(ssh, "vm_key"), filepath.Join(ssh, "second key"), filepath.Join(ssh, "inc_key")},
		KnownHostsFiles:       []string{filepath.Join(dir, "kh"), filepath.Join(dir, "kh2")},
		GlobalKnownHostsFiles: []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"},
		StrictHostKeyChecking: "accept-new",
		ConnectTimeout:        7 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("myvm:\n got %+v\nwant %+v", got, want)
	}

	// The destination's user and port win over the file's.
	got, err = resolveWithoutSSH(ctx, "ssh://root@myvm2:22", cfg, 0, env)
	if err != nil || got.User != "root" || got.Port != 22 || got.HostName != "192.0.2.7" || got.StrictHostKeyChecking != "ask" {
		t.Errorf("root@myvm2:22 = %+v, %v", got, err)
	}
	// A negated pattern: only Host * applies, and the default identities.
	got, err = resolveWithoutSSH(ctx, "myvm-old", cfg, 0, env)
	if err != nil || got.User != "fallback" || got.Port != 9 || got.HostName != "myvm-old" ||
		!slices.Equal(got.IdentityFiles, []string{filepath.Join(ssh, "inc_key")}) || got.IdentityAgent != "/tmp/agent.sock" {
		t.Errorf("myvm-old = %+v, %v", got, err)
	}
	// Match originalhost.
	got, err = resolveWithoutSSH(ctx, "jump", cfg, 0, env)
	if err != nil || got.User != "hop" || got.HostName != "198.51.100.1" {
		t.Errorf("jump = %+v, %v", got, err)
	}
	if _, err := resolveWithoutSSH(ctx, "a.proxied", cfg, 0, env); !errors.Is(err, ErrProxyCommand) {
		t.Errorf("ProxyCommand: %v, want ErrProxyCommand", err)
	}
}

// ProxyJump hops are read from the same file.
func TestResolveWithoutSSHJump(t *testing.T) {
	env := builtinEnv(t)
	_, cfg := writeConfig(t, "config", "Host inner\n  ProxyJump bastion\nHost bastion\n  HostName 203.0.113.9\n  Port 2022\n")
	got, err := resolveWithoutSSH(context.Background(), "inner", cfg, 0, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Jumps) != 1 || got.Jumps[0].HostName != "203.0.113.9" || got.Jumps[0].Port != 2022 || !slices.Equal(got.ProxyJump, []string{"bastion"}) {
		t.Errorf("jumps = %+v", got.Jumps)
	}
}

func TestResolveWithoutSSHErrors(t *testing.T) {
	env := builtinEnv(t)
	ctx := context.Background()
	if _, err := resolveWithoutSSH(ctx, "x", filepath.Join(t.TempDir(), "none"), 0, env); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing -F file: %v", err)
	}
	for text, want := range map[string]string{
		"Port 70000\n":                     "config:1: bad port \"70000\"",
		"Host x\n\n  User\n":               "config:3: user needs a value",
		"IdentityFile \"unterminated\n":    "config:1: unterminated quote",
		"StrictHostKeyChecking maybe\n":    "config:1: bad stricthostkeychecking",
		"Include %DIR%/config\n":           "nested more than 16 deep",
		"IdentityFile ~/.ssh/%z\n":         "unknown token %z",
		"Host *\n  ConnectTimeout soon\n":  "config:2: bad connecttimeout",
		"Match all\n  ProxyCommand nc x\n": "ProxyCommand is not supported",
	} {
		_, cfg := writeConfig(t, "config", text)
		if _, err := resolveWithoutSSH(ctx, "x", cfg, 0, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}

// Resolve takes the built-in path when no ssh program is found, and
// honours -F there.
func TestResolveWithoutSSH(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, cfg := writeConfig(t, "config", "Host vm\n  HostName example.org\n  User bob\n  Port 2022\n")
	got, err := Resolve(context.Background(), "vm", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "bob" || got.HostName != "example.org" || got.Port != 2022 || got.StrictHostKeyChecking != "ask" || got.Alias != "vm" {
		t.Errorf("Resolve without ssh = %+v", got)
	}
	if _, err := Resolve(context.Background(), "vm", "/does/not/exist"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing -F file without ssh: %v", err)
	}
}

// The agent: $SSH_AUTH_SOCK, else where the OS keeps one.
func TestDefaultAgent(t *testing.T) {
	env := testEnv
	env.getenv = func(string) string { return "" }
	if got := env.defaultAgent(); got != "" {
		t.Errorf("no agent on Linux: %q", got)
	}
	env.host = sshpaths.Host{GOOS: "windows", Pipes: func() []string { return []string{"openssh-ssh-agent"} }}
	if got := env.defaultAgent(); got != sshpaths.OpenSSHAgentPipe {
		t.Errorf("Windows: %q", got)
	}
	env.host = sshpaths.Host{GOOS: "darwin", LaunchdGetenv: func(string) string { return "/private/tmp/com.apple.launchd.x/Listeners" }}
	if got := env.defaultAgent(); got != "/private/tmp/com.apple.launchd.x/Listeners" {
		t.Errorf("macOS: %q", got)
	}
	if got := agentPath("SSH_AUTH_SOCK", env); got != "/private/tmp/com.apple.launchd.x/Listeners" {
		t.Errorf("agentPath on macOS: %q", got)
	}
}

// Windows' ssh -G prints __PROGRAMDATA__ in globalknownhostsfile.
func TestParseSSHGProgramData(t *testing.T) {
	env := testEnv
	env.host = sshpaths.Host{GOOS: "windows", Getenv: func(k string) string { return map[string]string{"ProgramData": `D:\PD`}[k] }}
	got, err := parseSSHG([]byte("host vm\nhostname vm\nuser me\nport 22\nglobalknownhostsfile __PROGRAMDATA__\\ssh/ssh_known_hosts __PROGRAMDATA__\\ssh/ssh_known_hosts2\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`D:\PD\ssh/ssh_known_hosts`, `D:\PD\ssh/ssh_known_hosts2`}; !slices.Equal(got.GlobalKnownHostsFiles, want) {
		t.Errorf("GlobalKnownHostsFiles = %q, want %q", got.GlobalKnownHostsFiles, want)
	}
}

// Without ssh, a name is an ssh_config alias when a block that does not
// apply to every name applies to it; -F replaces the default files.
func TestIsConfigAliasWithoutSSH(t *testing.T) {
	env := builtinEnv(t)
	if err := os.WriteFile(filepath.Join(env.home, ".ssh", "config"), []byte("Host usual\n  Port 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, cfg := writeConfig(t, "config", "Host *.lan !old.lan\n  User lan\nMatch originalhost box\n  IdentityFile k\nHost *\n  Port 22\n")
	for _, c := range []struct {
		host, file string
		want       bool
	}{
		{"vm.lan", cfg, true},
		{"old.lan", cfg, false},
		{"box", cfg, true},
		{"other", cfg, false},
		{"usual", cfg, false}, // -F replaces ~/.ssh/config
		{"usual", "", true},
		{"other", "", false},
	} {
		got, err := isConfigAlias(c.host, c.file, env)
		if err != nil || got != c.want {
			t.Errorf("isConfigAlias(%q, %q) = %v, %v, want %v", c.host, c.file, got, err, c.want)
		}
	}
	if _, err := isConfigAlias("x", "/does/not/exist", env); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing -F file: %v", err)
	}
}
