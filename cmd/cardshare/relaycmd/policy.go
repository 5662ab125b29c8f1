package relaycmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/relay/trust"
)

func newRelayPolicyCmd() *cobra.Command {
	stateDir := defaultRelayDir()
	var readers []string
	var ctlFlag string
	cmd := &cobra.Command{
		Use:   "policy NAME",
		Short: "Set which host readers a paired guest may use",
		Long: `policy replaces the reader policy of a paired guest, or of a pairing not yet
used: with --readers the guest sees and uses only the host readers whose names
match a pattern (* ? [...]; pcscd names readers "NAME XX YY", so end a pattern
with *); --control deny refuses it SCardControl (reader escape commands). With
neither, the guest may use every reader again.

A running ` + "`relay serve`" + ` applies the new policy within a quarter second: it
closes the guest's connection, which ends the guest's open pcsc-lite
connections (pcscd frees their card locks), and the agent reconnects under the
new policy within a second.`,
		Example: `  cardshare relay policy vm1 --readers 'Yubico YubiKey*'
  cardshare relay policy vm1 --readers 'REINER SCT*' --readers 'Yubico*' --control deny
  cardshare relay policy vm1                  # every reader again`,
		Args: relayArgs(1, "policy needs the guest's name", "`cardshare relay list` shows the paired guests"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := cmdutil.GuestPolicy(readers, ctlFlag)
			if err != nil {
				return err
			}
			state, err := trust.OpenHostState(stateDir)
			if err != nil {
				return relayError(err)
			}
			if err := state.SetPolicy(args[0], p); err != nil {
				return relayError(err)
			}
			text := "every reader"
			if p != nil {
				text = control.PolicyText(p.Readers, p.DenyControl, false)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], text)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", stateDir, "`directory` of the host key and the paired guests")
	cmdutil.PolicyFlags(f, &readers, &ctlFlag)
	return cmd
}
