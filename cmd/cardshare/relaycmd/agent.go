package relaycmd

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

type relayAgentOptions struct {
	credentials string
	socket      string
	listen      string
}

func newRelayAgentCmd(g *cmdutil.Globals) *cobra.Command {
	o := &relayAgentOptions{credentials: defaultCredentials()}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Serve the host pcscd on a socket in this guest",
		Long: `agent creates the guest socket, prints the export line for it, connects to the
host this guest joined, and relays every pcsc-lite connection made on the
socket to the host pcscd, until Ctrl-C.

The socket lives in a directory only this user can enter ($XDG_RUNTIME_DIR/cardshare,
else ~/.cardshare), so other guest users cannot reach the card. A lost
connection is retried with backoff (1 s doubling to 30 s); meanwhile programs
get "Service not available" at once instead of hanging, and connections that
were open end with an error, so the host pcscd frees their card locks. A host
that refuses this guest's key (revoked) ends the agent.

A guest that joined with --listen waits there for the host to connect
instead (the host dials it; ` + "`relay pair --dial`" + `), and takes each new
authenticated connection from the host as the session, so a host that
restarted is back at once. Until the host connects, programs get "Service not
available". Whoever else connects learns nothing and is cut off.

The agent compares the guest's libpcsclite with the host pcscd when it can
read the release from the package manager, and logs what to do if they cannot
talk.`,
		Example: `  cardshare relay agent
  cardshare relay agent --socket /home/me/.pcsc/pcscd.comm
  cardshare relay agent --listen :7744     # wait for the host on another port than at join`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return relayError(runRelayAgent(cmd.Context(), g, o, cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.credentials, "credentials", o.credentials, "credentials `file` that `relay join` wrote")
	f.StringVar(&o.socket, "socket", "", "guest socket `path` (default: pcscd.comm in a directory only this user can enter)")
	f.StringVar(&o.listen, "listen", "", "wait on `address` for the host to connect (default: where `relay join --listen` waited; the host must dial it there)")
	return cmd
}

func runRelayAgent(ctx context.Context, g *cmdutil.Globals, o *relayAgentOptions, stdout io.Writer) error {
	defer cmdutil.OneProc()()
	log := g.Logger()
	ctx, stopHup := cmdutil.HangupStops(ctx, log)
	defer stopHup()
	creds, err := trust.LoadCredentials(o.credentials)
	if err != nil {
		return err
	}
	socket := o.socket
	if socket == "" {
		socket = unixsock.DefaultGuestSocket()
	} else if err := unixsock.CheckChosenDir(filepath.Dir(socket)); err != nil {
		return fmt.Errorf("relay: --socket: %w", err)
	}
	ln, err := unixsock.ListenGuestSocket(socket)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	cfg := relay.DefaultAgentConfig()
	cfg.Logger = log
	if c, ok := localPCSCLite(ctx); ok {
		cfg.Client = &c
		log.Info("guest libpcsclite", "client", c.String())
	}
	if o.listen != "" {
		creds.Listen = o.listen
	}
	if creds.Listen != "" {
		hl, err := relay.ListenAddr(ctx, creds.Listen)
		if err != nil {
			ln.Close()
			return err
		}
		cfg.HostListener = hl
	}
	a, err := relay.NewAgent(creds, cfg)
	if err != nil {
		ln.Close()
		if cfg.HostListener != nil {
			cfg.HostListener.Close()
		}
		return err
	}
	fmt.Fprintf(stdout, "export PCSCLITE_CSOCK_NAME=%s\n", socket)
	err = a.Run(ctx, ln)
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// localPCSCLite reads the release of this machine's libpcsclite from its
// package manager, as SSH mode does in the guest.
func localPCSCLite(ctx context.Context) (pcsc.Client, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, q := range [][]string{
		{"dpkg-query", "-W", "-f", "${Version}", "libpcsclite1"},
		{"rpm", "-q", "--qf", "%{VERSION}", "pcsc-lite-libs"},
		{"pkg-config", "--modversion", "libpcsclite"},
	} {
		out, err := exec.CommandContext(ctx, q[0], q[1:]...).Output()
		if err != nil {
			continue
		}
		if c, ok := pcsc.ClientOfRelease(strings.TrimSpace(string(out))); ok {
			return c, true
		}
	}
	return pcsc.Client{}, false
}
