package cmdutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
)

// Flags that several subcommands share, declared once so that their names
// and help stay the same everywhere.

// SSHConfigFlag is -F/--ssh-config, as for ssh -F.
func SSHConfigFlag(f *pflag.FlagSet, p *string) {
	f.StringVarP(p, "ssh-config", "F", "", "ssh_config `file` to use instead of ~/.ssh/config")
}

// AcceptNewFlag is --accept-new, as StrictHostKeyChecking accept-new.
func AcceptNewFlag(f *pflag.FlagSet, p *bool) {
	f.BoolVar(p, "accept-new", false, "record the host key of a guest not yet in known_hosts (never accepts a changed key)")
}

// GuestSocketFlag is --guest-socket; def says what the default is for this
// subcommand.
func GuestSocketFlag(f *pflag.FlagSet, p *string, def string) {
	f.StringVar(p, "guest-socket", "", "socket `path` in the guest"+def)
}

// PCSCDSocketFlag is --pcscd-socket; its default is *p.
func PCSCDSocketFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "pcscd-socket", *p, "host pcscd socket `path`")
}

// BackendFlag is --backend, where the host's PC/SC comes from
// (hostpcsc.New); its default is *p.
func BackendFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "backend", *p, "where the host's PC/SC comes from: auto, socket (the pcscd socket) or native (the system's PC/SC API)")
}

// PolicyFlags adds the reader policy flags of the relay commands, which
// expose has too.
func PolicyFlags(f *pflag.FlagSet, readers *[]string, control *string) {
	f.StringArrayVar(readers, "readers", nil, "show the guest only the host readers matching `pattern` (* ? [...]; repeat for more)")
	f.StringVar(control, "control", "allow", "allow or deny SCardControl (reader escape commands) to the guest")
}

// DefaultPCSCDSocket honours PCSCLITE_CSOCK_NAME on the host, as the host's
// own libpcsclite would.
func DefaultPCSCDSocket() string {
	if p := os.Getenv("PCSCLITE_CSOCK_NAME"); p != "" {
		return p
	}
	return pcsc.DefaultSocket
}

// ConnCaps are --max-guest-conns and --max-conns: the pcsc-lite
// connections that one guest, and all guests together, may hold open on
// the host pcscd (internal/connlimit).
type ConnCaps struct{ PerGuest, Total int }

// ConnCapsFlags declares --max-guest-conns and --max-conns.
func ConnCapsFlags(f *pflag.FlagSet, c *ConnCaps) {
	f.IntVar(&c.PerGuest, "max-guest-conns", connlimit.DefaultPerGuest, "most pcscd connections one guest may hold open; more get \"Service not available\"")
	f.IntVar(&c.Total, "max-conns", connlimit.DefaultTotal, "most pcscd connections all guests together may hold open, leaving room in pcscd (about 200) for the host's programs")
}

// Limiter returns the one Limiter of the process for c, logging refusals
// to log once per burst.
func (c ConnCaps) Limiter(log *slog.Logger) (*connlimit.Limiter, error) {
	if c.PerGuest < 1 || c.Total < 1 || c.Total > config.MaxConnsLimit || c.PerGuest > c.Total {
		return nil, Usage(fmt.Sprintf("--max-guest-conns %d and --max-conns %d are out of range", c.PerGuest, c.Total),
			fmt.Sprintf("choose 1 ≤ --max-guest-conns ≤ --max-conns ≤ %d: pcscd serves about 200 clients in all", config.MaxConnsLimit))
	}
	return connlimit.New(&connlimit.Config{PerGuest: c.PerGuest, Total: c.Total, Logger: log})
}

// HostStatus is the "host" of the status document for src, opened for
// socket, speaking d.
func HostStatus(src hostpcsc.Source, socket string, d pcsc.Daemon) control.HostStatus {
	h := control.HostStatus{Backend: hostpcsc.BackendOf(src), Source: src.String(), Protocol: d.Version.String(), Releases: d.Releases()}
	if h.Backend == hostpcsc.PCSCDSocket {
		h.PCSCDSocket = socket
	}
	return h
}

// OpenHost opens the host's PC/SC that --backend and --pcscd-socket name
// (hostpcsc.Open) and logs what it speaks. The caller closes the source
// (hostpcsc.Close) when the command ends.
func OpenHost(ctx context.Context, log *slog.Logger, backend, socket string) (hostpcsc.Source, pcsc.Daemon, error) {
	src, d, err := hostpcsc.Open(ctx, backend, socket, log)
	if err != nil {
		return nil, d, err
	}
	log.Info("host PC/SC", "backend", hostpcsc.BackendOf(src), "source", src.String(), "protocol", d.Version.String(), "releases", d.Releases())
	return src, d, nil
}
