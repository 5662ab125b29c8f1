package qemucmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/ccidconf"
)

func newSnippetCmd() *cobra.Command {
	o := ccidconf.SnippetOptions{}
	cmd := &cobra.Command{
		Use:   "snippet",
		Short: "Print the libvirt XML, QEMU arguments and Proxmox args: line for emulated readers",
		Long: `snippet prints what gives a guest emulated USB CCID readers: the libvirt
<smartcard mode='passthrough'> XML (virsh edit DOMAIN), the equivalent plain
QEMU arguments (-device qemu-xhci, -chardev socket, -device usb-ccid,
-device ccid-card-passthru) and a Proxmox VE args: line, then the
` + "`cardshare qemu attach`" + ` command that serves them.

By default QEMU listens on the sockets (server=on; libvirt mode='bind') and
cardshare dials them, reconnecting when QEMU restarts. With --listen
cardshare listens and QEMU connects (reconnect=2; libvirt mode='connect'):
the socket is mode 0600, so QEMU must run as the same user or root.
qemu-xhci, not usb-ehci alone: EHCI refuses the full-speed reader.

` + limits,
		Example: `  cardshare qemu snippet --domain win11
  cardshare qemu snippet --domain win11 --readers 2 --listen --socket-dir /run/user/1000/cardshare`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Readers < 1 || o.Readers > 16 {
				return cmdutil.Usage(fmt.Sprintf("--readers %d is out of range", o.Readers), "give the number of emulated readers, 1 to 16 (one usb-ccid device each)")
			}
			ccidconf.Snippet(cmd.OutOrStdout(), o)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Domain, "domain", "vm", "the VM's `name`, for socket paths and comments")
	f.IntVar(&o.Readers, "readers", 1, "`number` of emulated readers (usb-ccid devices, one chardev each)")
	f.BoolVar(&o.Listen, "listen", false, "cardshare listens and QEMU connects (default: QEMU listens)")
	f.StringVar(&o.SocketDir, "socket-dir", "/run/cardshare", "`directory` of the chardev sockets")
	return cmd
}
