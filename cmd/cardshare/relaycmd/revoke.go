package relaycmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/relay/trust"
)

func newRelayRevokeCmd() *cobra.Command {
	stateDir := defaultRelayDir()
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Cut a guest off, open connections included",
		Long: `revoke stops this host from accepting the guest's key. A running
` + "`relay serve`" + ` closes the guest's connection within a quarter second, which ends
every pcsc-lite connection it carried, so pcscd frees their card locks. The
guest must pair again to come back; the name may be paired again.`,
		Args: relayArgs(1, "revoke needs the guest's name", "`cardshare relay list` shows the paired guests"),
		RunE: func(cmd *cobra.Command, args []string) error {
			state, err := trust.OpenHostState(stateDir)
			if err != nil {
				return relayError(err)
			}
			if err := state.Revoke(args[0], time.Now()); err != nil {
				return relayError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", stateDir, "`directory` of the host key and the paired guests")
	return cmd
}
