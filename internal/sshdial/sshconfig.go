package sshdial

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/sshpaths"
)

// ErrProxyCommand reports a destination whose ssh_config sets ProxyCommand,
// which cardshare cannot run; ProxyJump is supported.
var ErrProxyCommand = errors.New("ProxyCommand is not supported, use ProxyJump")

// maxJumpDepth bounds nested ProxyJump resolution, so that a config whose
// jump hosts jump through each other fails instead of recursing forever.
const maxJumpDepth = 8

// Target is a resolved SSH destination, as OpenSSH would connect to it.
type Target struct {
	// Alias is the destination as the user typed it ("myvm", "user@host:2222").
	Alias string
	// User is the remote login name.
	User string
	// HostName and Port are the address to connect to.
	HostName string
	Port     int
	// IdentityFiles are the private key files to offer, with ~ and % tokens
	// expanded; only files that exist (or whose .pub exists) are kept.
	IdentityFiles []string
	// IdentitiesOnly limits agent keys to those matching an IdentityFiles key.
	IdentitiesOnly bool
	// IdentityAgent is the ssh-agent socket path; "" means no agent.
	IdentityAgent string
	// KnownHostsFiles are the user known_hosts files (UserKnownHostsFile);
	// they need not exist. Newly accepted host keys go to the first one.
	// Empty means host keys cannot be recorded (UserKnownHostsFile /dev/null).
	KnownHostsFiles []string
	// GlobalKnownHostsFiles are read like KnownHostsFiles but never written.
	GlobalKnownHostsFiles []string
	// HashKnownHosts writes new known_hosts entries with hashed host names.
	HashKnownHosts bool
	// HostKeyAlias, when set, is the name looked up in known_hosts instead
	// of HostName and Port.
	HostKeyAlias string
	// StrictHostKeyChecking is "yes", "accept-new", "no" or "ask"; "ask" and
	// "" act as "yes" because cardshare does not ask.
	StrictHostKeyChecking string
	// ProxyJump lists the jump hosts as written in the config, in order.
	ProxyJump []string
	// Jumps are the ProxyJump hops resolved by Resolve; Dial connects
	// through them. The first hop may have Jumps of its own.
	Jumps []Target
	// ConnectTimeout bounds the TCP connect and the server's part of the
	// key exchange; zero means Dial's default (15 s).
	ConnectTimeout time.Duration
}

// Addr returns HostName and Port as host:port.
func (t Target) Addr() string {
	return net.JoinHostPort(t.HostName, strconv.Itoa(t.Port))
}

// Resolve turns a destination into a Target honouring ssh_config.
// dest is an ssh_config Host alias or [ssh://][user@]host[:port], where an
// IPv6 host with a port is written in brackets ("[::1]:2222").
//
// When the ssh program is installed, Resolve runs `ssh -G [-F configFile]`
// and so evaluates the config exactly like OpenSSH. configFile "" means
// ssh's default (~/.ssh/config, then /etc/ssh/ssh_config); as with ssh -F, a
// configFile replaces both. Without an ssh program (or with only an
// MSYS/Cygwin one on Windows, whose ssh -G prints POSIX paths), cardshare
// reads configFile or the default ssh_config files itself, for the
// keywords a connection needs, with OpenSSH's defaults for the OS
// (builtin.go).
func Resolve(ctx context.Context, dest, configFile string) (Target, error) {
	return resolve(ctx, dest, configFile, 0)
}

// ErrConfigFile means the ssh_config file given for ssh -F cannot be read;
// ssh would only say "Can't open user config file".
var ErrConfigFile = errors.New("ssh_config file")

// CheckConfigFile checks that an ssh_config file given for ssh -F can be
// read; "" (ssh's own files, which may be missing) is fine.
func CheckConfigFile(file string) error {
	if file == "" {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfigFile, err)
	}
	f.Close()
	return nil
}

func resolve(ctx context.Context, dest, configFile string, depth int) (Target, error) {
	if depth > maxJumpDepth {
		return Target{}, fmt.Errorf("resolve %s: more than %d nested ProxyJump hops", dest, maxJumpDepth)
	}
	env := currentLocalEnv()
	sshPath, ok := nativeSSH(env)
	if !ok {
		return resolveWithoutSSH(ctx, dest, configFile, depth, env)
	}
	if err := CheckConfigFile(configFile); err != nil {
		return Target{}, err
	}
	args, err := sshGArgs(dest, configFile)
	if err != nil {
		return Target{}, err
	}
	out, err := exec.CommandContext(ctx, sshPath, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return Target{}, fmt.Errorf("resolve %s: ssh -G: %s: %w", dest, strings.TrimSpace(string(ee.Stderr)), err)
		}
		return Target{}, fmt.Errorf("resolve %s: ssh -G: %w", dest, err)
	}
	t, err := parseSSHG(out, env)
	if err != nil {
		return Target{}, fmt.Errorf("resolve %s: %w", dest, err)
	}
	t.Alias = dest
	t.IdentityFiles = existingKeyFiles(t.IdentityFiles)
	// OpenSSH turns "ProxyJump a,b" into "reach b through a": the first hop
	// keeps its own ProxyJump, a later hop's ProxyJump is overridden.
	for i, hop := range t.ProxyJump {
		h, err := resolve(ctx, hop, configFile, depth+1)
		if err != nil {
			return Target{}, fmt.Errorf("jump host of %s: %w", dest, err)
		}
		if i > 0 {
			h.ProxyJump, h.Jumps = nil, nil
		}
		t.Jumps = append(t.Jumps, h)
	}
	return t, nil
}

// parseDest splits [ssh://][user@]host[:port]. ssh -G rejects host:port
// and, in OpenSSH 9.2, bracketed IPv6 in ssh:// URIs, so Resolve passes the
// parts as -l and -p.
func parseDest(dest string) (user, host string, port int, err error) {
	bad := func(why string) (string, string, int, error) {
		return "", "", 0, fmt.Errorf("bad destination %q: %s", dest, why)
	}
	s := strings.TrimPrefix(dest, "ssh://")
	if s != dest {
		s = strings.TrimSuffix(s, "/")
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user, s = s[:i], s[i+1:]
		if user == "" {
			return bad("empty user name")
		}
	}
	portStr, hasPort := "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ]")
		}
		host, portStr = s[1:end], s[end+1:]
		if portStr != "" {
			if portStr[0] != ':' {
				return bad("junk after ]")
			}
			portStr, hasPort = portStr[1:], true
		}
	case strings.Count(s, ":") == 1:
		host, portStr, hasPort = strings.Cut(s, ":")
	default: // no colon, or a bare IPv6 address without a port
		host = s
	}
	if host == "" {
		return bad("empty host")
	}
	if strings.HasPrefix(host, "-") || strings.HasPrefix(user, "-") {
		return bad("must not start with -")
	}
	if strings.ContainsFunc(dest, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return bad("contains spaces or control characters")
	}
	if hasPort {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return bad("port must be 1-65535")
		}
	}
	return user, host, port, nil
}

// sshGArgs returns the arguments for `ssh -G` that resolve dest.
func sshGArgs(dest, configFile string) ([]string, error) {
	user, host, port, err := parseDest(dest)
	if err != nil {
		return nil, err
	}
	args := []string{"-G", "-T"}
	if configFile != "" {
		args = append(args, "-F", configFile)
	}
	if user != "" {
		args = append(args, "-l", user)
	}
	if port != 0 {
		args = append(args, "-p", strconv.Itoa(port))
	}
	return append(args, "--", host), nil
}

// parseSSHG parses the lowercase "key value" lines printed by ssh -G.
// OpenSSH 9.2 expands ~ and tokens in userknownhostsfile and identityagent
// but prints identityfile as written, so identity files are expanded here.
func parseSSHG(out []byte, env localEnv) (Target, error) {
	t := Target{Port: 22, StrictHostKeyChecking: "ask"}
	var origHost, agent string
	var agentSet bool
	var rawIDs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		var err error
		switch key {
		case "host":
			origHost = val
		case "user":
			t.User = val
		case "hostname":
			t.HostName = val
		case "port":
			t.Port, err = strconv.Atoi(val)
		case "identityfile":
			rawIDs = append(rawIDs, val)
		case "identitiesonly":
			t.IdentitiesOnly = val == "yes"
		case "identityagent":
			agent, agentSet = val, true
		case "userknownhostsfile":
			t.KnownHostsFiles = knownHostsList(val, env)
		case "globalknownhostsfile":
			t.GlobalKnownHostsFiles = knownHostsList(val, env)
		case "hashknownhosts":
			t.HashKnownHosts = val == "yes"
		case "hostkeyalias":
			t.HostKeyAlias = val
		case "stricthostkeychecking":
			t.StrictHostKeyChecking, err = strictMode(val)
		case "proxyjump":
			if val != "none" {
				t.ProxyJump = strings.Split(val, ",")
			}
		case "proxycommand":
			if val != "none" {
				return Target{}, fmt.Errorf("%w (ProxyCommand %s)", ErrProxyCommand, val)
			}
		case "connecttimeout":
			t.ConnectTimeout, err = seconds(val)
		}
		if err != nil {
			return Target{}, fmt.Errorf("ssh -G printed bad %s %q", key, val)
		}
	}
	if t.HostName == "" || t.User == "" {
		return Target{}, errors.New("ssh -G printed no hostname or user")
	}
	if !agentSet {
		agent = "SSH_AUTH_SOCK"
	}
	t.IdentityAgent = agentPath(agent, env)
	tok := tokens(t, origHost, env)
	for _, raw := range rawIDs {
		p, err := expandPath(raw, tok, env)
		if err != nil {
			return Target{}, fmt.Errorf("identityfile %s: %w", raw, err)
		}
		t.IdentityFiles = append(t.IdentityFiles, p)
	}
	return t, nil
}

// strictMode maps ssh -G's stricthostkeychecking (true, false, ask,
// accept-new) to the ssh_config spelling.
func strictMode(v string) (string, error) {
	switch v {
	case "true", "yes":
		return "yes", nil
	case "false", "no", "off":
		return "no", nil
	case "ask", "accept-new":
		return v, nil
	}
	return "", errors.New("unknown value")
}

func seconds(v string) (time.Duration, error) {
	if v == "none" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	return time.Duration(n) * time.Second, err
}

// knownHostsList splits a space-separated file list; /dev/null and none
// mean "no file".
func knownHostsList(v string, env localEnv) []string {
	var files []string
	for _, f := range strings.Fields(v) {
		if f != "/dev/null" && f != "none" {
			files = append(files, env.host.ExpandProgramData(env.tilde(f)))
		}
	}
	return files
}

// agentPath interprets IdentityAgent: none, SSH_AUTH_SOCK, $VAR or a path.
func agentPath(v string, env localEnv) string {
	switch {
	case v == "none":
		return ""
	case v == "SSH_AUTH_SOCK":
		return env.defaultAgent()
	case strings.HasPrefix(v, "$") && !strings.Contains(v, "/"):
		return env.getenv(strings.Trim(v[1:], "{}"))
	}
	return env.tilde(v)
}

// localEnv is what token expansion needs to know about the local side.
type localEnv struct {
	home, user, hostname string
	uid                  int
	getenv               func(string) string
	// host is where OpenSSH keeps its files and agent on this OS; the zero
	// value (tests) knows no agent but $SSH_AUTH_SOCK.
	host sshpaths.Host
}

func currentLocalEnv() localEnv {
	env := localEnv{uid: os.Getuid(), getenv: os.Getenv, host: sshpaths.Current()}
	// OpenSSH takes the home directory from the password database, not $HOME.
	if u, err := user.Current(); err == nil {
		env.home, env.user = u.HomeDir, u.Username
	}
	if env.home == "" {
		env.home, _ = os.UserHomeDir()
	}
	env.hostname, _ = os.Hostname()
	return env
}

func (env localEnv) tilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return env.home + p[1:]
	}
	return p
}

// tokens returns the % tokens that ssh_config(5) allows in IdentityFile.
func tokens(t Target, origHost string, env localEnv) map[byte]string {
	short, _, _ := strings.Cut(env.hostname, ".")
	port := strconv.Itoa(t.Port)
	alias := t.HostKeyAlias
	if alias == "" {
		alias = origHost
	}
	sum := sha1.Sum([]byte(env.hostname + t.HostName + port + t.User))
	return map[byte]string{
		'%': "%", 'C': hex.EncodeToString(sum[:]), 'd': env.home,
		'h': t.HostName, 'i': strconv.Itoa(env.uid), 'k': alias,
		'L': short, 'l': env.hostname, 'n': origHost, 'p': port,
		'r': t.User, 'u': env.user,
	}
}

// expandPath expands a leading ~, % tokens and ${VAR} like OpenSSH does
// for IdentityFile.
func expandPath(p string, tok map[byte]string, env localEnv) (string, error) {
	p = env.tilde(p)
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '%' && i+1 < len(p):
			v, ok := tok[p[i+1]]
			if !ok {
				return "", fmt.Errorf("unknown token %%%c", p[i+1])
			}
			b.WriteString(v)
			i++
		case p[i] == '%':
			return "", errors.New("trailing %")
		case strings.HasPrefix(p[i:], "${"):
			end := strings.IndexByte(p[i:], '}')
			if end < 0 {
				return "", errors.New("unterminated ${")
			}
			v := env.getenv(p[i+2 : i+end])
			if v == "" {
				return "", fmt.Errorf("environment variable %s is not set", p[i+2:i+end])
			}
			b.WriteString(v)
			i += end
		default:
			b.WriteByte(p[i])
		}
	}
	return b.String(), nil
}

// existingKeyFiles keeps the key files that exist, or whose public half
// exists (a key held only by an agent, named for IdentitiesOnly).
func existingKeyFiles(files []string) []string {
	var kept []string
	for _, f := range files {
		if fileExists(f) || fileExists(f+".pub") {
			kept = append(kept, f)
		}
	}
	return kept
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
