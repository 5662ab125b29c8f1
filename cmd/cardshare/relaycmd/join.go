package relaycmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

type relayJoinOptions struct {
	token       string
	credentials string
	listen      string
	timeout     time.Duration
}

func newRelayJoinCmd(g *cmdutil.Globals) *cobra.Command {
	o := &relayJoinOptions{credentials: defaultCredentials()}
	cmd := &cobra.Command{
		Use:   "join --token TOKEN (HOST:PORT | --listen ADDR)",
		Short: "Pair this guest with a host, once",
		Long: `join connects to ` + "`cardshare relay serve`" + ` at HOST:PORT (vsock://2:PORT over vsock),
checks that the host's key is the one in TOKEN, and proves the token's secret.
The host then pins a key that join creates for this guest. join stores that
key, the host's address and its key's fingerprint in the credentials file,
mode 0600, for ` + "`cardshare relay agent`" + `; joining again replaces them.

TOKEN comes from ` + "`cardshare relay pair NAME`" + ` on the host; it works once.

With --listen, the host connects to this guest instead (the host paired it
with ` + "`relay pair --dial`" + `, for a guest the host can reach but that cannot reach
the host): join waits on ADDR (:PORT for every address, vsock://:PORT over
vsock) until the host that TOKEN names connects, up to --timeout. Anyone else
who connects learns nothing and is ignored. ` + "`relay agent`" + ` then listens there too.`,
		Example: `  cardshare relay join --token cs1-... 192.168.122.1:7743
  cardshare relay join --token cs1-... vsock://2:7743
  cardshare relay join --token cs1-... --listen :7744     # the host connects to this guest`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.listen == "" && len(args) == 0:
				return cmdutil.Usage("join needs the host's address, or --listen", "`cardshare relay join --token TOKEN HOST:PORT`, with the address where `relay serve` listens; or --listen :PORT when the host connects to this guest (`relay pair --dial`)")
			case o.listen != "" && len(args) > 0:
				return cmdutil.Usage("join takes the host's address or --listen, not both", "with --listen the host connects to this guest; drop the address")
			case len(args) > 1:
				return cmdutil.Usage("join takes one address", "`cardshare relay join --token TOKEN HOST:PORT`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayError(runRelayJoin(cmd.Context(), g, o, args, cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.token, "token", "", "pairing `token` from `cardshare relay pair` (required)")
	f.StringVar(&o.credentials, "credentials", o.credentials, "credentials `file` to write")
	f.StringVar(&o.listen, "listen", "", "wait on `address` (:PORT, HOST:PORT or vsock://:PORT) for the host to connect, instead of connecting to it")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "with --listen, how long to wait for the host")
	return cmd
}

func runRelayJoin(ctx context.Context, g *cmdutil.Globals, o *relayJoinOptions, args []string, stdout io.Writer) error {
	if o.token == "" {
		return cmdutil.Usage("join needs --token", "run `cardshare relay pair NAME` on the host and pass the token it prints")
	}
	tok, err := trust.ParseToken(o.token)
	if err != nil {
		return err
	}
	var creds *trust.Credentials
	peer := ""
	if o.listen != "" {
		ln, err := relay.ListenAddr(ctx, o.listen)
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Fprintf(stdout, "waiting on %s for the host (key %s) to connect...\n", ln.Addr(), tok.HostKey)
		creds, err = relay.JoinListening(ctx, ln, tok, &relay.JoinConfig{Timeout: o.timeout})
		if err != nil {
			return err
		}
		creds.Listen, peer = o.listen, "the host"
	} else {
		if creds, err = relay.Join(ctx, args[0], tok, nil); err != nil {
			return err
		}
		peer = args[0]
	}
	if err := creds.Save(o.credentials); err != nil {
		return err
	}
	g.Logger().Info("paired", "guest", creds.Guest, "host", peer, "host_key", creds.HostKey.String())
	fmt.Fprintf(stdout, "paired with %s as %s; credentials in %s\nnow run: cardshare relay agent\n", peer, creds.Guest, o.credentials)
	return nil
}
