package relaycmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/relay/trust"
)

func newRelayListCmd() *cobra.Command {
	stateDir := defaultRelayDir()
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the paired guests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			state, err := trust.OpenHostState(stateDir)
			if err != nil {
				return relayError(err)
			}
			guests, err := state.Guests()
			if err != nil {
				return relayError(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "host key %s\n", state.Fingerprint())
			for _, g := range guests {
				status := "paired " + g.Paired.Local().Format(time.DateTime)
				if !g.Active() {
					status = "revoked " + g.Revoked.Local().Format(time.DateTime)
				}
				if g.Dial != "" {
					status += ", host dials " + g.Dial
				}
				if p := control.PolicyText(g.Readers, g.DenyControl, false); p != "" {
					status += ", " + p
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", g.Name, g.Key, status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", stateDir, "`directory` of the host key and the paired guests")
	return cmd
}
