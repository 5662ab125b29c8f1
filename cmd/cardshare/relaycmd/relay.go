package relaycmd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

// New is `cardshare relay` and its subcommands.
func New(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Share the host pcscd with guests over TLS or vsock, without SSH",
		Long: `relay connects guests to the host pcscd without SSH: each guest runs
` + "`cardshare relay agent`" + `, which keeps one connection to ` + "`cardshare relay serve`" + ` on
the host and carries every pcsc-lite connection of the guest's programs over it.
The connection is TCP or vsock, always with TLS 1.3 and both ends
authenticated by keys pinned at pairing: no CA, no passwords, no plaintext.

Pair each guest once: ` + "`relay pair NAME`" + ` on the host prints a one-time token
(valid 10 minutes) that ` + "`relay join`" + ` in the guest uses to exchange keys.
` + "`relay revoke NAME`" + ` cuts a guest off at once, open connections included.
` + "`relay policy NAME --readers PATTERN`" + ` limits the host readers a guest may use.

Host state (host key, paired guests) and guest credentials live in
$XDG_CONFIG_HOME/cardshare/relay (~/.config/cardshare/relay), mode 0700.`,
		Example: `  host$  cardshare relay serve --listen 0.0.0.0:7743     # or --listen vsock://:7743
  host$  cardshare relay pair vm1                         # prints the token
  guest$ cardshare relay join 192.168.122.1:7743           # asks for the token
  guest$ cardshare relay agent                            # prints the export line
  host$  cardshare relay policy vm1 --readers 'Yubico YubiKey*'
  host$  cardshare relay revoke vm1

  # a guest the host can reach but that cannot reach the host: the host dials
  host$  cardshare relay pair --dial 10.0.0.5:7744 vm2
  guest$ cardshare relay join --listen :7744
  guest$ cardshare relay agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRelayServeCmd(g), newRelayPairCmd(), newRelayListCmd(), newRelayRevokeCmd(),
		newRelayPolicyCmd(), newRelayJoinCmd(g), newRelayAgentCmd(g))
	return cmd
}

// defaultRelayDir is where relay mode keeps its files on both ends.
func defaultRelayDir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		d = filepath.Join(os.TempDir(), fmt.Sprintf("cardshare-%d", os.Getuid()))
	}
	return filepath.Join(d, "cardshare", "relay")
}

// defaultCredentials is the guest's credentials file.
func defaultCredentials() string { return filepath.Join(defaultRelayDir(), "credentials.json") }

// relayError attaches what the user can do about a relay error.
func relayError(err error) error {
	if err == nil {
		return nil
	}
	var hinted interface{ Hint() string }
	if errors.As(err, &hinted) && hinted.Hint() != "" {
		return err // it says what to do already
	}
	if h := relayHint(err); h != "" {
		return cmdutil.WithHint(err, h)
	}
	return err
}

func relayHint(err error) string {
	var oe *net.OpError
	switch {
	case errors.Is(err, trust.ErrPairingRefused):
		return "a token works once and for a limited time; run `cardshare relay pair NAME` on the host again and join with the new token (the host's log says why it refused)"
	case errors.Is(err, relay.ErrGuestRefused):
		return "the host no longer accepts this guest's key (revoked, or paired with another host): pair again with `cardshare relay pair NAME` on the host and `cardshare relay join` here"
	case errors.Is(err, trust.ErrHostKeyMismatch):
		return "the machine at that address is not the host this guest paired with (or that issued the token); check the address, and if the host's state directory was replaced, pair again"
	case errors.Is(err, trust.ErrBadToken):
		return "copy the whole token that `cardshare relay pair` printed; it starts with cs1-"
	case errors.Is(err, trust.ErrNoCredentials):
		return "pair this guest first: `cardshare relay pair NAME` on the host, then `cardshare relay join HOST:PORT` here, with the token it printed"
	case errors.Is(err, trust.ErrGuestExists):
		return "revoke the old guest first with `cardshare relay revoke NAME`, or pair under another name"
	case errors.Is(err, trust.ErrUnknownGuest):
		return "`cardshare relay list` shows the paired guests"
	case errors.Is(err, relay.ErrBadAddr):
		return "give the guest's address as this host reaches it, HOST:PORT (10.0.0.5:7744), or vsock://CID:PORT for a VM socket"
	case errors.Is(err, trust.ErrBadName):
		return "name the guest like a host name: `vm1`, `build-runner.2`"
	case errors.Is(err, unixsock.ErrSocketInUse):
		return "another agent (or a forward) serves that path; stop it, or choose another path with --socket"
	case errors.Is(err, unixsock.ErrUnsafePermissions):
		return "keys live there: make it this user's own and private, as the error says"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "is `cardshare relay serve` running on the host, and its port open to this guest (firewall)? for vsock, the host is vsock://2:PORT"
	case errors.As(err, &oe) && oe.Op == "listen":
		return "choose another address with --listen, or stop what serves that one"
	}
	return ""
}
