package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/relay"
)

type relayServeOptions struct {
	listen      string
	stateDir    string
	pcscdSocket string
}

func newRelayServeCmd(g *globals) *cobra.Command {
	o := &relayServeOptions{listen: ":7743", stateDir: defaultRelayDir(), pcscdSocket: defaultPCSCDSocket()}
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Serve the host pcscd to paired guests",
		Long: `serve listens for paired guests and relays each pcsc-lite connection they carry
to the host pcscd, until Ctrl-C. ADDR is HOST:PORT for TCP, or vsock://:PORT
(vsock://CID:PORT) for VM sockets, which need no guest network.

Every connection starts with a TLS 1.3 handshake in which both ends prove
their pinned keys; a peer without a paired key learns nothing and is cut off
within 10 seconds. Guests paired or revoked while serve runs take effect at
once. Each guest gets its own counters, logged when it detaches.`,
		Example: `  cardshare relay serve --listen 0.0.0.0:7743
  cardshare relay serve --listen vsock://:7743`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return relayError(runRelayServe(cmd.Context(), g, o, cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", o.listen, "`address` to listen on: HOST:PORT or vsock://[CID]:PORT")
	f.StringVar(&o.stateDir, "state-dir", o.stateDir, "`directory` of the host key and the paired guests")
	f.StringVar(&o.pcscdSocket, "pcscd-socket", o.pcscdSocket, "host pcscd socket `path`")
	return cmd
}

func runRelayServe(ctx context.Context, g *globals, o *relayServeOptions, stdout io.Writer) error {
	defer oneProc()()
	log := g.logger()
	daemon, err := pcsc.Probe(ctx, o.pcscdSocket)
	if err != nil {
		return fmt.Errorf("host pcscd at %s: %w", o.pcscdSocket, err)
	}
	log.Info("host pcscd", "socket", o.pcscdSocket, "protocol", daemon.Version.String(), "releases", daemon.Releases())
	state, err := relay.OpenHostState(o.stateDir)
	if err != nil {
		return err
	}
	ln, err := relay.ListenAddr(ctx, o.listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "relay: listening on %s\nrelay: host key %s\n", ln.Addr(), state.Fingerprint())
	h := relay.NewHost(state, &relay.HostConfig{
		Logger: log,
		Dial:   relay.UnixDialer(o.pcscdSocket),
		Relay:  relay.Config{Daemon: daemon},
	})
	err = h.Serve(ctx, ln)
	if err == nil {
		log.Info("stopped")
	}
	return err
}
