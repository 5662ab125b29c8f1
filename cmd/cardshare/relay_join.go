package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/relay"
)

type relayJoinOptions struct {
	token       string
	credentials string
}

func newRelayJoinCmd(g *globals) *cobra.Command {
	o := &relayJoinOptions{credentials: defaultCredentials()}
	cmd := &cobra.Command{
		Use:   "join --token TOKEN HOST:PORT",
		Short: "Pair this guest with a host, once",
		Long: `join connects to ` + "`cardshare relay serve`" + ` at HOST:PORT (vsock://2:PORT over vsock),
checks that the host's key is the one in TOKEN, and proves the token's secret.
The host then pins a key that join creates for this guest. join stores that
key, the host's address and its key's fingerprint in the credentials file,
mode 0600, for ` + "`cardshare relay agent`" + `; joining again replaces them.

TOKEN comes from ` + "`cardshare relay pair NAME`" + ` on the host; it works once.`,
		Example: `  cardshare relay join --token cs1-... 192.168.122.1:7743
  cardshare relay join --token cs1-... vsock://2:7743`,
		Args: relayArgs(1, "join needs the host's address", "`cardshare relay join --token TOKEN HOST:PORT`, with the address where `relay serve` listens"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayError(runRelayJoin(cmd.Context(), g, o, args[0], cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.token, "token", "", "pairing `token` from `cardshare relay pair` (required)")
	f.StringVar(&o.credentials, "credentials", o.credentials, "credentials `file` to write")
	return cmd
}

func runRelayJoin(ctx context.Context, g *globals, o *relayJoinOptions, addr string, stdout io.Writer) error {
	if o.token == "" {
		return &usageError{"join needs --token", "run `cardshare relay pair NAME` on the host and pass the token it prints"}
	}
	tok, err := relay.ParseToken(o.token)
	if err != nil {
		return err
	}
	creds, err := relay.Join(ctx, addr, tok, nil)
	if err != nil {
		return err
	}
	if err := creds.Save(o.credentials); err != nil {
		return err
	}
	g.logger().Info("paired", "guest", creds.Guest, "host", addr, "host_key", creds.HostKey.String())
	fmt.Fprintf(stdout, "paired with %s as %s; credentials in %s\nnow run: cardshare relay agent\n", addr, creds.Guest, o.credentials)
	return nil
}
