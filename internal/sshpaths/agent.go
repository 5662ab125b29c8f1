package sshpaths

import (
	"regexp"
	"strings"
)

// OpenSSHAgentPipe is the named pipe of Windows' OpenSSH agent service
// (ssh-agent.exe), which its ssh.exe uses when SSH_AUTH_SOCK is not set
// (PowerShell/openssh-portable, contrib/win32/win32compat: the agent's
// default address). The service is disabled by default: `Get-Service
// ssh-agent | Set-Service -StartupType Automatic; Start-Service ssh-agent`
// (Microsoft Learn, "Key-based authentication in OpenSSH for Windows").
const OpenSSHAgentPipe = `\\.\pipe\openssh-ssh-agent`

// Agent is where the ssh-agent is.
type Agent struct {
	// Addr is a Unix socket path or a named pipe (\\.\pipe\NAME).
	Addr string
	// Source says how it was found: "SSH_AUTH_SOCK", "launchd",
	// "Windows OpenSSH agent" or "Pageant".
	Source string
	// Present reports whether the socket or pipe exists now.
	Present bool
}

// IsPipe reports whether addr names a Windows named pipe: \\.\pipe\NAME,
// or //./pipe/NAME as Pageant writes it into ssh_config (its
// --openssh-config output uses '/', which every Windows OpenSSH accepts).
func IsPipe(addr string) bool {
	a := strings.ToLower(strings.ReplaceAll(addr, "/", `\`))
	return strings.HasPrefix(a, `\\.\pipe\`)
}

// pipeName returns NAME of \\.\pipe\NAME in the backslash form.
func pipeName(addr string) string {
	return strings.ReplaceAll(addr, "/", `\`)[len(`\\.\pipe\`):]
}

// pageantPipe matches Pageant's pipe: "pageant." + user name + "." + a
// 64-digit hex hash of a per-user secret (PuTTY
// windows/utils/agent_named_pipe_name.c; the hash comes from
// CryptProtectMemory, so it is found by listing pipes, not computed).
var pageantPipe = regexp.MustCompile(`^pageant\.(.+)\.[0-9a-f]{64}$`)

// PageantPipe returns the pipe of user's Pageant among names, or "".
func PageantPipe(user string, names []string) string {
	for _, n := range names {
		if m := pageantPipe.FindStringSubmatch(n); m != nil && strings.EqualFold(m[1], user) {
			return `\\.\pipe\` + n
		}
	}
	return ""
}

// FindAgent returns the agent OpenSSH would use, in its order:
// $SSH_AUTH_SOCK; on macOS, launchd's SSH_AUTH_SOCK for the session (a
// process started outside it, e.g. over ssh or with a scrubbed
// environment, lacks the variable; launchd owns the socket and starts
// ssh-agent on first use); on Windows the OpenSSH agent's pipe when it
// exists, else Pageant's, else the OpenSSH pipe anyway (not Present: its
// service is not running). ok is false when there is no agent to try.
func FindAgent(h Host) (a Agent, ok bool) {
	// On Windows, an SSH_AUTH_SOCK that is a POSIX path comes from an MSYS
	// or Cygwin ssh-agent (Git Bash's `eval $(ssh-agent)`): its socket is
	// emulated by the MSYS runtime, and no Windows program can reach it,
	// Windows' own ssh.exe included. It is passed over.
	if s := h.getenv("SSH_AUTH_SOCK"); s != "" && !(h.windows() && strings.HasPrefix(s, "/") && !IsPipe(s)) {
		return Agent{Addr: s, Source: "SSH_AUTH_SOCK", Present: h.present(s)}, true
	}
	switch h.GOOS {
	case "darwin":
		if h.LaunchdGetenv != nil {
			if s := h.LaunchdGetenv("SSH_AUTH_SOCK"); s != "" {
				return Agent{Addr: s, Source: "launchd", Present: h.exists(s)}, true
			}
		}
	case "windows":
		var pipes []string
		if h.Pipes != nil {
			pipes = h.Pipes()
		}
		for _, p := range pipes {
			if strings.EqualFold(p, pipeName(OpenSSHAgentPipe)) {
				return Agent{Addr: OpenSSHAgentPipe, Source: "Windows OpenSSH agent", Present: true}, true
			}
		}
		if p := PageantPipe(h.User, pipes); p != "" {
			return Agent{Addr: p, Source: "Pageant", Present: true}, true
		}
		return Agent{Addr: OpenSSHAgentPipe, Source: "Windows OpenSSH agent"}, true
	}
	return Agent{}, false
}

// present reports whether an agent address exists: a pipe is looked up
// in the pipe list (os.Stat may open the pipe, taking a connection the
// agent then sees close at once), a socket with Exists.
func (h Host) present(addr string) bool {
	if !IsPipe(addr) {
		return h.exists(addr)
	}
	if h.Pipes == nil {
		return false
	}
	for _, p := range h.Pipes() {
		if strings.EqualFold(p, pipeName(addr)) {
			return true
		}
	}
	return false
}
