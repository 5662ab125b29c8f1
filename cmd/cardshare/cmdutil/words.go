package cmdutil

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// Guest is a guest as the user named it, with the flags they gave, so
// that hints can be commands to paste: `ssh -F ./vms.conf myvm`, not
// `ssh GUEST`.
type Guest struct {
	// Name is what the user typed: an alias, [user@]host[:port] or a VM.
	Name string
	// SSHConfig is their -F file ("" for ssh's own).
	SSHConfig string
	// Target and Source are where Name resolved to, when it did.
	Target   sshdial.Target
	Source   vm.Source
	Resolved bool
}

// SSH is the ssh command line that reaches the guest as cardshare does,
// with opts (e.g. "-v") before the destination.
func (g Guest) SSH(opts ...string) string {
	args := append([]string{"ssh"}, opts...)
	cfg := g.SSHConfig
	if g.Resolved && g.Source.ConfigFile != "" {
		cfg = g.Source.ConfigFile // Lima's own ssh.config
	}
	if cfg != "" {
		args = append(args, "-F", ShellQuote(cfg))
	}
	switch {
	case g.Resolved && g.Source.Kind != "" && g.Source.Kind != "ssh_config" && g.Source.Kind != "host name":
		// A VM manager's address, or host:port: ssh needs -p and the host.
		t := g.Target
		if t.Port != 0 && t.Port != 22 {
			args = append(args, "-p", strconv.Itoa(t.Port))
		}
		dest := t.HostName
		if t.User != "" {
			dest = t.User + "@" + dest
		}
		args = append(args, ShellQuote(dest))
	case strings.Contains(g.Name, ":") && !strings.HasPrefix(g.Name, "ssh://"):
		args = append(args, ShellQuote("ssh://"+g.Name))
	default:
		args = append(args, ShellQuote(g.Name))
	}
	return strings.Join(args, " ")
}

// GuestHint is Hint for an error of guest g, in the user's own words: the
// commands it suggests carry their -F file, the guest's name or address and
// their known_hosts file.
func GuestHint(err error, g Guest) string {
	switch {
	case errors.Is(err, sshdial.ErrNoSuchHost) && (g.Source.Unknown() || !g.Resolved):
		where := g.Name + " is not a host name that resolves"
		if g.Resolved {
			where = g.Source.WhereLooked(g.Name, g.SSHConfig)
		}
		return fmt.Sprintf("%s; check the spelling, or see where a name leads with `cardshare resolve %s`", where, ShellQuote(g.Name))
	case errors.Is(err, sshdial.ErrHostUnknown):
		return fmt.Sprintf("check the fingerprint with the guest's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, then run again with --accept-new (or `%s` once) to record it", g.SSH())
	case errors.Is(err, sshdial.ErrHostKeyChanged):
		host, files, _ := sshdial.HostKeyDetails(err)
		cmd := "ssh-keygen"
		if len(files) > 0 {
			cmd += " -f " + ShellQuote(files[0])
		}
		cmd += " -R " + ShellQuote(host)
		return fmt.Sprintf("if the guest was reinstalled, remove the old key with `%s` and connect again; otherwise do not connect", cmd)
	case errors.Is(err, sshdial.ErrAuth):
		return fmt.Sprintf("make sure `%s` logs in without a password: add your key to ssh-agent (`ssh-add`) or set IdentityFile for the guest in %s", g.SSH(), configName(g.SSHConfig))
	case errors.Is(err, sshdial.ErrConnect):
		return fmt.Sprintf("is the guest running, and its sshd reachable? `%s` shows the details; a guest that is still booting needs a longer --wait", g.SSH("-v"))
	}
	return Hint(err)
}

func configName(f string) string {
	if f == "" {
		return "~/.ssh/config"
	}
	return f
}

// ShellQuote quotes s for a POSIX shell when it needs it.
func ShellQuote(s string) string { return guestsock.QuoteIfNeeded(s) }
