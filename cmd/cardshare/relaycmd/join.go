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
	tokenFile   string
	credentials string
	listen      string
	timeout     time.Duration
}

func newRelayJoinCmd(g *cmdutil.Globals) *cobra.Command {
	o := &relayJoinOptions{credentials: defaultCredentials()}
	cmd := &cobra.Command{
		Use:   "join (HOST:PORT | --listen ADDR) < TOKEN",
		Short: "Pair this guest with a host, once",
		Long: `join connects to ` + "`cardshare relay serve`" + ` at HOST:PORT (vsock://2:PORT over vsock),
checks that the host's key is the one in TOKEN, and proves the token's secret.
The host then pins a key that join creates for this guest. join stores that
key, the host's address and its key's fingerprint in the credentials file,
mode 0600, for ` + "`cardshare relay agent`" + `; joining again replaces them.

TOKEN comes from ` + "`cardshare relay pair NAME`" + ` on the host; it works once.
join reads it from standard input: typed at a prompt, without echo, on a
terminal; piped in scripts. --token-file reads it from a file only its owner
may read. --token works too, with a warning: the command line shows the token
to other users of the guest (process list, shell history), who could pair
first while it is valid.

With --listen, the host connects to this guest instead (the host paired it
with ` + "`relay pair --dial`" + `, for a guest the host can reach but that cannot reach
the host): join waits on ADDR (:PORT for every address, vsock://:PORT over
vsock) until the host that TOKEN names connects, up to --timeout. Anyone else
who connects learns nothing and is ignored. ` + "`relay agent`" + ` then listens there too.`,
		Example: `  cardshare relay join 192.168.122.1:7743              # asks for the token
  printf %s "$TOKEN" | cardshare relay join vsock://2:7743
  cardshare relay join --token-file token.txt --listen :7744   # the host connects to this guest`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.listen == "" && len(args) == 0:
				return cmdutil.Usage("join needs the host's address, or --listen", "`cardshare relay join HOST:PORT`, with the address where `relay serve` listens; or --listen :PORT when the host connects to this guest (`relay pair --dial`)")
			case o.listen != "" && len(args) > 0:
				return cmdutil.Usage("join takes the host's address or --listen, not both", "with --listen the host connects to this guest; drop the address")
			case len(args) > 1:
				return cmdutil.Usage("join takes one address", "`cardshare relay join HOST:PORT`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayError(runRelayJoin(cmd.Context(), g, o, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.token, "token", "", "pairing `token` from `cardshare relay pair` (other users of the guest can see it: prefer standard input or --token-file)")
	f.StringVar(&o.tokenFile, "token-file", "", "read the pairing token from `file`, which only its owner may read")
	f.StringVar(&o.credentials, "credentials", o.credentials, "credentials `file` to write")
	f.StringVar(&o.listen, "listen", "", "wait on `address` (:PORT, HOST:PORT or vsock://:PORT) for the host to connect, instead of connecting to it")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "with --listen, how long to wait for the host")
	return cmd
}

func runRelayJoin(ctx context.Context, g *cmdutil.Globals, o *relayJoinOptions, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	text, err := readToken(o, stdin, stderr)
	if err != nil {
		return err
	}
	tok, err := trust.ParseToken(text)
	if err != nil {
		return err
	}
	var creds *trust.Credentials
	peer := ""
	if o.listen != "" {
		ctx, stopHup := cmdutil.HangupStops(ctx, g.Logger())
		defer stopHup()
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
	g.Logger().Info("paired", "guest", creds.Guest, "addr", peer, "host_key", creds.HostKey.String())
	fmt.Fprintf(stdout, "paired with %s as %s; credentials in %s\nnow run: cardshare relay agent\n", peer, creds.Guest, o.credentials)
	return nil
}
