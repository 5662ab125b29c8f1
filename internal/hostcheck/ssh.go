package hostcheck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh/agent"

	"github.com/cardshare/cardshare/internal/sshpaths"
)

// AgentProbe is what ProbeAgent learned about the ssh-agent.
type AgentProbe struct {
	Agent   sshpaths.Agent
	Found   bool  // an address to try was known
	DialErr error // connecting failed
	Keys    int   // keys the agent holds
	ListErr error // it connected but listing keys failed
}

// ProbeAgent finds the agent as OpenSSH would (sshpaths.FindAgent),
// connects and counts its keys (no key material is read or logged).
func ProbeAgent(ctx context.Context, h sshpaths.Host) AgentProbe {
	var p AgentProbe
	p.Agent, p.Found = sshpaths.FindAgent(h)
	if !p.Found {
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := sshpaths.DialAgent(ctx, p.Agent.Addr)
	if err != nil {
		p.DialErr = err
		return p
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	keys, err := agent.NewClient(c).List()
	p.Keys, p.ListErr = len(keys), err
	return p
}

// Agent checks the ssh-agent. No agent is a warning, not a failure:
// unencrypted key files work without one.
func Agent(goos string, p AgentProbe) Result {
	r := Result{Name: "ssh-agent"}
	where := ""
	if p.Found {
		where = fmt.Sprintf("%s (%s)", p.Agent.Addr, p.Agent.Source)
	}
	switch {
	case !p.Found:
		r.Status, r.Msg = Warn, "no ssh-agent: SSH_AUTH_SOCK is not set"
		r.Fix = "start one (`eval $(ssh-agent)`; `ssh-add`), or use key files without a passphrase"
	case p.DialErr != nil:
		r.Status = Warn
		r.Msg = "the ssh-agent at " + where + " does not answer"
		if errors.Is(p.DialErr, sshpaths.ErrAgentNotRunning) {
			r.Msg = "the ssh-agent at " + where + " is not running"
		}
		switch {
		case goos == "windows" && p.Agent.Source == "Windows OpenSSH agent":
			r.Fix = "the OpenSSH agent service is disabled by default; in an administrator PowerShell: `Get-Service ssh-agent | Set-Service -StartupType Automatic; Start-Service ssh-agent`, then `ssh-add` (or run Pageant)"
		case goos == "windows" && p.Agent.Source == "Pageant":
			r.Fix = "start Pageant and load your key"
		case goos == "darwin" && p.Agent.Source == "launchd":
			r.Fix = "launchd starts ssh-agent on first use; log out and in, or set SSH_AUTH_SOCK to `launchctl getenv SSH_AUTH_SOCK`"
		default:
			r.Fix = "SSH_AUTH_SOCK points at a dead agent: start it again, or unset SSH_AUTH_SOCK"
		}
	case p.ListErr != nil:
		r.Status, r.Msg = Warn, "the ssh-agent at "+where+" does not list its keys: "+p.ListErr.Error()
	case p.Keys == 0:
		r.Status, r.Msg = Warn, "the ssh-agent at "+where+" holds no keys"
		r.Fix = "`ssh-add` your key"
		if goos == "darwin" {
			r.Fix = "`ssh-add --apple-use-keychain ~/.ssh/id_ed25519` (the passphrase is kept in the login keychain)"
		}
	default:
		r.Status, r.Msg = OK, fmt.Sprintf("%s holds %d key(s)", where, p.Keys)
	}
	return r
}

// SSHProgram checks for an ssh program. Without one, cardshare reads
// ssh_config itself, which covers less (no Match exec, no tokens in every
// option).
func SSHProgram(goos string, p sshpaths.Program, err error) Result {
	r := Result{Name: "ssh program"}
	switch {
	case err != nil:
		r.Status, r.Msg = Warn, "no ssh program: cardshare reads ssh_config itself, without Match exec"
		if goos == "windows" {
			r.Fix = "install Windows' OpenSSH client (Settings > System > Optional features, or `Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0` as administrator)"
		} else {
			r.Fix = "install OpenSSH's client"
		}
	case !p.Native:
		r.Status, r.Msg = Warn, p.Path+" is an MSYS/Cygwin ssh (Git for Windows): cardshare does not use its ssh -G, whose paths are POSIX"
		r.Fix = "install Windows' OpenSSH client (`Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0`)"
	default:
		r.Status, r.Msg = OK, p.Path
	}
	return r
}

// WSLNetworking returns the networkingMode of a .wslconfig file ("nat"
// when unset: WSL's default; Microsoft Learn, "Advanced settings
// configuration in WSL", [wsl2] networkingMode).
func WSLNetworking(wslconfig []byte) string {
	section := ""
	mode := "nat"
	for l := range strings.SplitSeq(string(wslconfig), "\n") {
		l = strings.TrimSpace(l)
		if i := strings.IndexAny(l, "#;"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = strings.ToLower(strings.TrimSpace(l[1 : len(l)-1]))
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if ok && section == "wsl2" && strings.EqualFold(strings.TrimSpace(k), "networkingMode") {
			mode = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return mode
}

// WSL says how a WSL2 distribution reaches `cardshare relay serve` on
// this Windows host, for the networking mode of %USERPROFILE%\.wslconfig.
func WSL(wslconfig []byte, port int) Result {
	r := Result{Name: "WSL2", Status: OK}
	switch mode := WSLNetworking(wslconfig); mode {
	case "mirrored":
		r.Msg = fmt.Sprintf("networkingMode=mirrored: the distro reaches relay serve at 127.0.0.1:%d", port)
	case "nat":
		r.Msg = fmt.Sprintf("networkingMode=nat (the default): the distro reaches relay serve at the Windows host's address on the WSL switch (its default gateway: `ip route show default`), port %d", port)
		r.Fix = fmt.Sprintf("let relay serve listen on that address and allow TCP %d from the WSL network in Windows Defender Firewall; or set networkingMode=mirrored in .wslconfig (Windows 11 22H2+) and use 127.0.0.1", port)
	default:
		r.Status, r.Msg = Warn, "networkingMode="+mode+" in .wslconfig: cardshare documents nat and mirrored only"
	}
	return r
}
