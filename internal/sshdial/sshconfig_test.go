package sshdial

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDest(t *testing.T) {
	tests := []struct {
		dest, user, host string
		port             int
		wantErr          bool
	}{
		{dest: "myvm", host: "myvm"},
		{dest: "bob@myvm", user: "bob", host: "myvm"},
		{dest: "bob@host:2222", user: "bob", host: "host", port: 2222},
		{dest: "host:22", host: "host", port: 22},
		{dest: "a@b@host", user: "a@b", host: "host"},
		{dest: "::1", host: "::1"},
		{dest: "fe80::1%eth0", host: "fe80::1%eth0"},
		{dest: "fe80::", host: "fe80::"},
		{dest: "[::1]", host: "::1"},
		{dest: "[::1]:2222", host: "::1", port: 2222},
		{dest: "bob@[::1]:2222", user: "bob", host: "::1", port: 2222},
		{dest: "ssh://bob@[::1]:2201", user: "bob", host: "::1", port: 2201},
		{dest: "ssh://host/", host: "host"},
		{dest: "", wantErr: true},
		{dest: "@host", wantErr: true},
		{dest: "bob@", wantErr: true},
		{dest: "host:", wantErr: true},
		{dest: "host:0", wantErr: true},
		{dest: "host:65536", wantErr: true},
		{dest: "host:ssh", wantErr: true},
		{dest: "[::1", wantErr: true},
		{dest: "[::1]x", wantErr: true},
		{dest: "[::1]:", wantErr: true},
		{dest: "-oProxyCommand=evil", wantErr: true},
		{dest: "-l@host", wantErr: true},
		{dest: "my vm", wantErr: true},
		{dest: "host\n", wantErr: true},
	}
	for _, tt := range tests {
		user, host, port, err := parseDest(tt.dest)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseDest(%q) = %q, %q, %d; want error", tt.dest, user, host, port)
			}
			continue
		}
		if err != nil || user != tt.user || host != tt.host || port != tt.port {
			t.Errorf("parseDest(%q) = %q, %q, %d, %v; want %q, %q, %d", tt.dest, user, host, port, err, tt.user, tt.host, tt.port)
		}
	}
}

func TestSSHGArgs(t *testing.T) {
	tests := []struct {
		dest, config string
		want         string
	}{
		{"myvm", "", "-G -T -- myvm"},
		{"myvm", "/cfg", "-G -T -F /cfg -- myvm"},
		{"bob@host:2222", "", "-G -T -l bob -p 2222 -- host"},
		{"[::1]:22", "/c", "-G -T -F /c -p 22 -- ::1"},
		{"ssh://bob@[::1]:2201", "", "-G -T -l bob -p 2201 -- ::1"},
	}
	for _, tt := range tests {
		args, err := sshGArgs(tt.dest, tt.config)
		if got := strings.Join(args, " "); err != nil || got != tt.want {
			t.Errorf("sshGArgs(%q, %q) = %q, %v; want %q", tt.dest, tt.config, got, err, tt.want)
		}
	}
	if _, err := sshGArgs("-F/etc/passwd", ""); err == nil {
		t.Error("sshGArgs accepted a destination that is an option")
	}
}

// testEnv is the local side the recordings in testdata were made on.
var testEnv = localEnv{
	home: "/root", user: "root", hostname: "box.example.org", uid: 0,
	getenv: func(k string) string {
		return map[string]string{"SSH_AUTH_SOCK": "/tmp/agent.sock", "KEYS": "/keys"}[k]
	},
}

var defaultIDs = []string{"/root/.ssh/id_rsa", "/root/.ssh/id_ecdsa", "/root/.ssh/id_ecdsa_sk", "/root/.ssh/id_ed25519", "/root/.ssh/id_ed25519_sk", "/root/.ssh/id_xmss", "/root/.ssh/id_dsa"}

// TestParseSSHG parses `ssh -G -T -F testdata/X.cfg HOST` output recorded
// with OpenSSH 9.2 (Debian 12).
func TestParseSSHG(t *testing.T) {
	globalKH := []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	tests := []struct {
		file string
		want Target
	}{
		{"sshg-vagrant.txt", Target{
			User: "vagrant", HostName: "127.0.0.1", Port: 2222,
			IdentityFiles:         []string{"/home/alice/proj/.vagrant/machines/default/virtualbox/private_key"},
			IdentitiesOnly:        true,
			IdentityAgent:         "/tmp/agent.sock",
			GlobalKnownHostsFiles: globalKH,
			StrictHostKeyChecking: "no",
		}},
		{"sshg-lima.txt", Target{
			User: "alice", HostName: "127.0.0.1", Port: 60022,
			IdentityFiles:         []string{"/home/alice/.lima/_config/user"},
			IdentitiesOnly:        true,
			IdentityAgent:         "/tmp/agent.sock",
			GlobalKnownHostsFiles: globalKH,
			StrictHostKeyChecking: "no",
		}},
		{"sshg-defaults.txt", Target{
			User: "bob", HostName: "::1", Port: 2222,
			IdentityFiles:         defaultIDs,
			IdentityAgent:         "/tmp/agent.sock",
			KnownHostsFiles:       []string{"/root/.ssh/known_hosts", "/root/.ssh/known_hosts2"},
			GlobalKnownHostsFiles: globalKH,
			StrictHostKeyChecking: "ask",
		}},
		{"sshg-agentenv.txt", Target{
			User: "root", HostName: "envagent", Port: 22,
			IdentityFiles:         defaultIDs,
			IdentityAgent:         "/tmp/agent.sock",
			KnownHostsFiles:       []string{"/root/.ssh/known_hosts", "/root/.ssh/known_hosts2"},
			GlobalKnownHostsFiles: globalKH,
			StrictHostKeyChecking: "yes",
		}},
		{"sshg-jump.txt", Target{
			User: "dave", HostName: "10.0.0.5", Port: 22,
			IdentityFiles:         []string{"/root/.ssh/10.0.0.5_dave_key", "/root/.ssh/id_ed25519"},
			KnownHostsFiles:       []string{"/root/.ssh/known_hosts", "/root/.ssh/known_hosts_vms"},
			HashKnownHosts:        true,
			HostKeyAlias:          "guest-vm",
			StrictHostKeyChecking: "accept-new",
			ProxyJump:             []string{"bastion", "carol@hop2:2200"},
			ConnectTimeout:        7 * time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseSSHG(out, testEnv)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseSSHG:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseSSHGErrors(t *testing.T) {
	out, err := os.ReadFile("testdata/sshg-proxycommand.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, err = parseSSHG(out, testEnv)
	if !errors.Is(err, ErrProxyCommand) || !strings.Contains(err.Error(), "ssh -W %h:%p gateway") {
		t.Errorf("proxycommand: err = %v, want ErrProxyCommand naming the command", err)
	}
	for _, in := range []string{
		"user u\nport 22\n",                               // no hostname
		"user u\nhostname h\nport x\n",                    // bad port
		"user u\nhostname h\nstricthostkeychecking maybe", // unknown mode
		"user u\nhostname h\nidentityfile ~/%z",           // unknown token
		"user u\nhostname h\nidentityfile ${NOPE}/k",      // unset variable
	} {
		if _, err := parseSSHG([]byte(in), testEnv); err == nil {
			t.Errorf("parseSSHG(%q) succeeded, want error", in)
		}
	}
}

func TestExpandPath(t *testing.T) {
	tok := tokens(Target{User: "bob", HostName: "h.example", Port: 2222}, "orig", testEnv)
	tests := []struct{ in, want string }{
		{"~/.ssh/id", "/root/.ssh/id"},
		{"~", "/root"},
		{"~bob/x", "~bob/x"},
		{"%d/%u/%i/%l/%L", "/root/root/0/box.example.org/box"},
		{"%h_%p_%r_%n_%k_%%", "h.example_2222_bob_orig_orig_%"},
		{"${KEYS}/id", "/keys/id"},
		// %C is the hex SHA-1 of %l%h%p%r; checked against ssh -G ControlPath.
		{"%C", "922518f13fe68a9926e9be66ccf3717dd37444f9"},
	}
	for _, tt := range tests {
		if got, err := expandPath(tt.in, tok, testEnv); err != nil || got != tt.want {
			t.Errorf("expandPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"%", "%q", "${UNSET}", "${KEYS"} {
		if got, err := expandPath(bad, tok, testEnv); err == nil {
			t.Errorf("expandPath(%q) = %q, want error", bad, got)
		}
	}
}

func TestAgentPath(t *testing.T) {
	for in, want := range map[string]string{
		"none": "", "SSH_AUTH_SOCK": "/tmp/agent.sock", "$KEYS": "/keys",
		"${KEYS}": "/keys", "~/a.sock": "/root/a.sock", "/run/a": "/run/a",
	} {
		if got := agentPath(in, testEnv); got != want {
			t.Errorf("agentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func needSSH(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh program:", err)
	}
}

// writeConfig writes an ssh_config into a temp dir; %DIR% becomes the dir.
func writeConfig(t *testing.T, name, text string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "%DIR%", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// TestResolveSSH runs the real ssh -G on a config using Include, Match exec
// and nested ProxyJump.
func TestResolveSSH(t *testing.T) {
	needSSH(t)
	dir, cfg := writeConfig(t, "config", `
Include %DIR%/included
Match host guest exec "test -e %DIR%/flag"
  User matched
Host guest
  HostName 127.0.0.2
  Port 2022
  User plain
  IdentitiesOnly yes
  IdentityFile %DIR%/id_%h
  IdentityFile %DIR%/missing
  UserKnownHostsFile %DIR%/kh /dev/null
  ProxyJump hop1,hop2
Host hop1
  ProxyJump hop0
Host hop2
  ProxyJump hop9
Host *
  IdentityAgent none
`)
	for _, f := range []string{"included", "flag", "id_127.0.0.2"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "included"), []byte("Host hop0\n  HostName 127.0.0.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), "guest", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Alias != "guest" || got.User != "matched" || got.HostName != "127.0.0.2" || got.Port != 2022 {
		t.Errorf("target = %+v", got)
	}
	if want := []string{filepath.Join(dir, "id_127.0.0.2")}; !slices.Equal(got.IdentityFiles, want) {
		t.Errorf("IdentityFiles = %q, want %q (existing ones only)", got.IdentityFiles, want)
	}
	if want := []string{filepath.Join(dir, "kh")}; !slices.Equal(got.KnownHostsFiles, want) || got.IdentityAgent != "" {
		t.Errorf("KnownHostsFiles = %q, IdentityAgent = %q", got.KnownHostsFiles, got.IdentityAgent)
	}
	// hop1 keeps its own ProxyJump (hop0, from the Include); hop2's is
	// overridden by the chain, as with ssh -J hop1,hop2.
	if len(got.Jumps) != 2 || got.Jumps[0].Alias != "hop1" || got.Jumps[1].Alias != "hop2" {
		t.Fatalf("Jumps = %+v", got.Jumps)
	}
	if j := got.Jumps[0].Jumps; len(j) != 1 || j[0].HostName != "127.0.0.9" {
		t.Errorf("hop1 Jumps = %+v, want hop0 at 127.0.0.9", j)
	}
	if got.Jumps[1].ProxyJump != nil || got.Jumps[1].Jumps != nil {
		t.Errorf("hop2 kept its ProxyJump: %+v", got.Jumps[1])
	}

	got, err = Resolve(context.Background(), "eve@guest:2200", cfg)
	if err != nil || got.User != "eve" || got.Port != 2200 || got.HostName != "127.0.0.2" {
		t.Errorf("Resolve(eve@guest:2200) = %+v, %v; command line must win", got, err)
	}
}

func TestResolveSSHErrors(t *testing.T) {
	needSSH(t)
	_, cfg := writeConfig(t, "config", `
Host old
  ProxyCommand nc %h %p
Host loop1
  ProxyJump loop2
Host loop2
  ProxyJump loop1
Host viaold
  ProxyJump old
`)
	ctx := context.Background()
	tests := []struct {
		dest, cfg string
		check     func(error) bool
	}{
		{"old", cfg, func(err error) bool { return errors.Is(err, ErrProxyCommand) }},
		{"viaold", cfg, func(err error) bool { return errors.Is(err, ErrProxyCommand) }},
		{"loop1", cfg, func(err error) bool { return strings.Contains(fmt.Sprint(err), "nested ProxyJump") }},
		{"x", filepath.Join(t.TempDir(), "absent"), func(err error) bool { return strings.Contains(fmt.Sprint(err), "absent") }},
		{"-oProxyCommand=x", cfg, func(err error) bool { return strings.Contains(fmt.Sprint(err), "bad destination") }},
	}
	for _, tt := range tests {
		_, err := Resolve(ctx, tt.dest, tt.cfg)
		if err == nil || !tt.check(err) {
			t.Errorf("Resolve(%q): err = %v", tt.dest, err)
		}
	}
}

// A missing -F file is named as such, not as ssh's "Can't open user config
// file".
func TestResolveMissingConfigFile(t *testing.T) {
	needSSH(t)
	_, err := Resolve(context.Background(), "myvm", filepath.Join(t.TempDir(), "config"))
	if !errors.Is(err, ErrConfigFile) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrConfigFile wrapping ErrNotExist", err)
	}
}
