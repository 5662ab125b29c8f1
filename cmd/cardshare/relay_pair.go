package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/relay"
)

type relayPairOptions struct {
	stateDir string
	expires  time.Duration
}

func newRelayPairCmd() *cobra.Command {
	o := &relayPairOptions{stateDir: defaultRelayDir(), expires: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "pair NAME",
		Short: "Print a one-time token that pairs a new guest called NAME",
		Long: `pair prints a token for ` + "`cardshare relay join`" + ` in the guest. It holds a one-time
secret and the fingerprint of this host's key, so the guest connects only to
this host, and this host pins the key the guest proves with the secret. The
token works once, within --expires; pairing NAME again replaces an unused one.

Treat the token as a password until it is used: whoever joins with it first
becomes NAME. ` + "`relay serve`" + ` need not run yet, but must run when the guest joins.`,
		Example: `  cardshare relay pair vm1
  cardshare relay pair --expires 1h ci-runner-3`,
		Args: relayArgs(1, "pair needs the new guest's name", "`cardshare relay pair vm1`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayError(runRelayPair(o, args[0], cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.stateDir, "state-dir", o.stateDir, "`directory` of the host key and the paired guests")
	f.DurationVar(&o.expires, "expires", o.expires, "how long the token stays valid")
	return cmd
}

func runRelayPair(o *relayPairOptions, name string, stdout io.Writer) error {
	if o.expires <= 0 {
		return &usageError{"--expires must be positive", "for example --expires 30m"}
	}
	state, err := relay.OpenHostState(o.stateDir)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := state.Pair(name, o.expires, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `pairing token for %s, valid once until %s:

    %s

in the guest, with the address where `+"`cardshare relay serve`"+` listens (vsock://2:PORT
over vsock):

    cardshare relay join --token %s HOST:PORT

host key %s (the token carries it; the guest checks it)
`, name, now.Add(o.expires).Format("15:04:05"), tok, tok, state.Fingerprint())
	return nil
}

// relayArgs wants n positional arguments, with a usage error otherwise.
func relayArgs(n int, msg, hint string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{msg, hint}
		}
		return nil
	}
}
