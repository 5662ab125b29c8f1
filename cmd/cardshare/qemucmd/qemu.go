package qemucmd

import (
	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
)

// limits is what --help of every qemu subcommand teaches; the README says
// the same.
const limits = `The guest sees QEMU's usb-ccid device (libccid names it "Gemalto Gemplus USB
SmartCard Reader 433-Swap") and uses its own CCID driver: Windows' usbccid,
libccid on Linux and the BSDs, macOS's. Nothing is installed in the guest.

One usb-ccid device has one slot: N host readers need N devices, each with a
ccid-card-passthru card on its own chardev (give --chardev N times, or
` + "`qemu snippet --readers N`" + `). Host readers matching --reader take free chardevs in
order; one plugged in later takes the next free one.

Limits:
  - APDUs only: no SCardControl, reader escape commands or PIN-pad features.
  - Responses reach the guest in CCID messages of at most 374 bytes (QEMU's
    bulk-in buffer); longer ones go in pieces through 61xx / GET RESPONSE.
    Commands pass up to 65526 bytes on QEMU 7.2; newer QEMU's
    x-accurate-message-length=on (its default) limits them to 374 bytes.
  - T=0 and T=1: QEMU 7.2's usb-ccid offers T=0 only. A card offering only
    T=1 (YubiKeys, most recent cards) is shown with T=0 added to its ATR, and
    cardshare keeps T=0's rules for the guest (61xx for data, 6Cxx for a wrong
    Le) while the host talks T=1 to the card. With a QEMU that has
    usb-ccid,x-t1-support=on, --t1 passes the ATR unchanged.
  - Sharing: the card is connected shared. The guest's commands run in a PC/SC
    transaction that ends after 200 ms without a guest command, so a host
    program's transaction never lands inside a burst of the guest's, and the
    guest waits while a host program holds one. --exclusive takes the card
    for the guest while it is present. A card reset or swapped by someone else
    shows in the guest as a removal and an insertion.`

// New is `cardshare qemu` and its subcommands.
func New(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "qemu",
		Short: "Show host readers to QEMU guests as emulated USB CCID readers (any guest OS, no guest software)",
		Long: `qemu passes the host's smart-card readers to a QEMU guest (libvirt,
virt-manager, GNOME Boxes, Proxmox VE, UTM, plain QEMU) as emulated USB CCID
readers: QEMU's usb-ccid device with a ccid-card-passthru card, whose chardev
speaks libcacard's VSCard protocol to cardshare.

` + limits,
		Example: `  cardshare qemu snippet --domain win11        # what to add to the VM
  cardshare qemu attach win11 --reader 'Yubico YubiKey*'
  cardshare qemu attach --chardev unix:/run/cardshare/vm-ccid0.sock --reader 'Yubico*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAttachCmd(g), newSnippetCmd())
	return cmd
}
