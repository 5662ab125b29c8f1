package sshdial

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/sshconfig"
	"github.com/cardshare/cardshare/internal/sshpaths"
)

// This file is Resolve where no native ssh program can evaluate ssh_config
// for us: internal/sshconfig reads the files, and the values get
// OpenSSH's defaults for this OS from internal/sshpaths; and the agent,
// found and dialled through sshpaths (a named pipe on Windows).

// resolveWithoutSSH is Resolve without an ssh program: cardshare reads
// configFile (or the user's and the system's ssh_config) itself, with
// OpenSSH's defaults for this OS (sshpaths) for what they do not set.
func resolveWithoutSSH(ctx context.Context, dest, configFile string, depth int, env localEnv) (Target, error) {
	user, host, port, err := parseDest(dest)
	if err != nil {
		return Target{}, err
	}
	h := env.paths()
	local := env.user
	if i := strings.LastIndexByte(local, '\\'); i >= 0 {
		local = local[i+1:] // DOMAIN\user on Windows
	}
	q := sshconfig.Query{Host: host, User: user, LocalUser: local, Home: env.home}
	o, err := sshconfig.Read(q, configFiles(configFile, h)...)
	if err != nil {
		return Target{}, err
	}
	t, err := configTarget(o, host, user, port, local, env)
	if err != nil {
		return Target{}, fmt.Errorf("resolve %s: %w", dest, err)
	}
	t.Alias = dest
	for i, hop := range t.ProxyJump {
		j, err := resolve(ctx, hop, configFile, depth+1)
		if err != nil {
			return Target{}, fmt.Errorf("jump host of %s: %w", dest, err)
		}
		if i > 0 {
			j.ProxyJump, j.Jumps = nil, nil
		}
		t.Jumps = append(t.Jumps, j)
	}
	return t, nil
}

// configFiles are the ssh_config files read without an ssh program:
// configFile alone (-F), else the user's and the system's.
func configFiles(configFile string, h sshpaths.Host) []sshconfig.File {
	if configFile != "" { // as ssh -F, a file replaces both
		return []sshconfig.File{{Path: configFile, Dir: h.UserDir(), Required: true}}
	}
	return []sshconfig.File{{Path: h.UserConfig(), Dir: h.UserDir()}, {Path: h.SystemConfig(), Dir: filepath.Dir(h.SystemConfig())}}
}

// IsConfigAlias reports whether the ssh_config Resolve reads without ssh
// (configFile, else the user's and the system's) has a Host or Match block
// for host that not every name gets: internal/vm's `ssh -G` comparison,
// where there is no ssh (Windows without its OpenSSH, Wine).
func IsConfigAlias(host, configFile string) (bool, error) {
	return isConfigAlias(host, configFile, currentLocalEnv())
}

func isConfigAlias(host, configFile string, env localEnv) (bool, error) {
	files := configFiles(configFile, env.paths())
	where := func(name string) (map[string]string, error) {
		o, err := sshconfig.Read(sshconfig.Query{Host: name, LocalUser: env.user, Home: env.home}, files...)
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		for k, v := range o.First {
			m[k] = v.Where
		}
		for i, v := range o.IdentityFiles {
			m["identityfile"+strconv.Itoa(i)] = v.Where
		}
		return m, nil
	}
	got, err := where(host)
	if err != nil {
		return false, err
	}
	base, err := where("cardshare-probe.invalid")
	if err != nil {
		return false, err
	}
	return !maps.Equal(got, base), nil
}

// configTarget turns the options read into a Target, with OpenSSH's
// defaults for what they do not set.
func configTarget(o *sshconfig.Options, host, user string, port int, local string, env localEnv) (Target, error) {
	h := env.paths()
	t := Target{HostName: host, User: user, Port: port, StrictHostKeyChecking: "ask",
		KnownHostsFiles: h.UserKnownHosts(), GlobalKnownHostsFiles: h.SystemKnownHosts()}
	first := o.Get
	bad := func(k, v string) error { return fmt.Errorf("ssh_config %s: bad %s %q", o.First[k].Where, k, v) }
	if v, ok := first("hostname"); ok {
		t.HostName = strings.ReplaceAll(strings.ReplaceAll(v, "%h", host), "%%", "%")
	}
	if v, ok := first("user"); ok && t.User == "" {
		t.User = v
	}
	if t.User == "" {
		t.User = local
	}
	if v, ok := first("port"); ok && t.Port == 0 {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, bad("port", v)
		}
		t.Port = n
	}
	if t.Port == 0 {
		t.Port = 22
	}
	if v, ok := first("proxycommand"); ok && !strings.EqualFold(v, "none") {
		return Target{}, fmt.Errorf("%w (ProxyCommand %s)", ErrProxyCommand, strings.Join(o.First["proxycommand"].Args, " "))
	}
	if v, ok := first("proxyjump"); ok && !strings.EqualFold(v, "none") {
		t.ProxyJump = strings.Split(v, ",")
	}
	if v, ok := first("stricthostkeychecking"); ok {
		s, err := strictMode(strings.ToLower(v))
		if err != nil {
			return Target{}, bad("stricthostkeychecking", v)
		}
		t.StrictHostKeyChecking = s
	}
	if v, ok := first("connecttimeout"); ok {
		d, err := seconds(v)
		if err != nil {
			return Target{}, bad("connecttimeout", v)
		}
		t.ConnectTimeout = d
	}
	if v, ok := first("identitiesonly"); ok {
		t.IdentitiesOnly = strings.EqualFold(v, "yes")
	}
	if v, ok := first("hashknownhosts"); ok {
		t.HashKnownHosts = strings.EqualFold(v, "yes")
	}
	t.HostKeyAlias, _ = first("hostkeyalias")
	agent, ok := first("identityagent")
	if !ok {
		agent = "SSH_AUTH_SOCK"
	}
	t.IdentityAgent = agentPath(agent, env)
	tok := tokens(t, host, env)
	files := func(k string, v sshconfig.Value) ([]string, error) {
		var out []string
		for _, a := range v.Args {
			if a == "none" || a == "/dev/null" {
				continue
			}
			p, err := expandPath(a, tok, env)
			if err != nil {
				return nil, fmt.Errorf("ssh_config %s: %s %s: %w", v.Where, k, a, err)
			}
			out = append(out, p)
		}
		return out, nil
	}
	var err error
	if v, ok := o.First["userknownhostsfile"]; ok {
		if t.KnownHostsFiles, err = files("userknownhostsfile", v); err != nil {
			return Target{}, err
		}
	}
	if v, ok := o.First["globalknownhostsfile"]; ok {
		if t.GlobalKnownHostsFiles, err = files("globalknownhostsfile", v); err != nil {
			return Target{}, err
		}
	}
	ids := h.IdentityFiles()
	if len(o.IdentityFiles) > 0 {
		ids = nil
		for _, v := range o.IdentityFiles {
			p, err := files("identityfile", sshconfig.Value{Args: v.Args[:1], Where: v.Where})
			if err != nil {
				return Target{}, err
			}
			ids = append(ids, p...)
		}
	}
	t.IdentityFiles = existingKeyFiles(ids)
	return t, nil
}

// paths is where OpenSSH keeps its files on this OS, for this env's home.
func (env localEnv) paths() sshpaths.Host {
	h := env.host
	if h.GOOS == "" {
		h.GOOS = "linux" // an env made up by a test
	}
	h.Home = env.home
	return h
}

// nativeSSH finds the ssh program whose `ssh -G` Resolve can use: on
// Windows, Windows' own OpenSSH before an MSYS one (sshpaths.FindSSH),
// which does not count.
func nativeSSH(env localEnv) (string, bool) {
	p, err := sshpaths.FindSSH(env.host)
	return p.Path, err == nil && p.Native
}

// defaultAgent is the agent when ssh_config names none (IdentityAgent
// SSH_AUTH_SOCK): $SSH_AUTH_SOCK, else where this OS keeps one (launchd's
// socket on macOS, the OpenSSH agent's or Pageant's pipe on Windows).
func (env localEnv) defaultAgent() string {
	if s := env.getenv("SSH_AUTH_SOCK"); s != "" {
		return s
	}
	if a, ok := sshpaths.FindAgent(env.host); ok {
		return a.Addr
	}
	return ""
}

// dialAgent connects to the agent at addr: a Unix socket, or a Windows
// named pipe (sshpaths.DialAgent).
func dialAgent(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), agentDialTimeout)
	defer cancel()
	return sshpaths.DialAgent(ctx, addr)
}

// agentDialTimeout bounds the wait for a busy agent pipe (Windows' agent
// serves one connection per pipe instance).
const agentDialTimeout = 5 * time.Second
