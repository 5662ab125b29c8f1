package relaycmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

type relayPairOptions struct {
	stateDir string
	expires  time.Duration
	dial     string
	readers  []string
	control  string
	ctlSock  string // relay serve's control socket, asked where it listens
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
becomes NAME. ` + "`relay serve`" + ` need not run yet, but must run when the guest joins.

--dial ADDR is for a guest that this host can reach but that cannot reach
this host (behind NAT, or a network that only lets the host in): ` + "`relay serve`" + `
then connects to the guest's agent at ADDR, for the pairing and from then on,
reconnecting with backoff. The guest joins with --listen instead of an
address. Authentication is the same both ways round.

--readers and --control set the guest's reader policy, as for ` + "`cardshare expose`" + `:
the guest sees and uses only the host readers whose names match a pattern
(* ? [...]; pcscd names readers "NAME XX YY", so end a pattern with *), and
--control deny refuses it SCardControl. ` + "`relay policy`" + ` changes it later.`,
		Example: `  cardshare relay pair vm1
  cardshare relay pair --expires 1h ci-runner-3
  cardshare relay pair --dial 10.0.0.5:7744 appliance    # the host connects to the guest
  cardshare relay pair --readers 'Yubico YubiKey*' --control deny vm2`,
		Args: relayArgs(1, "pair needs the new guest's name", "`cardshare relay pair vm1`"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayError(runRelayPair(cmd.Context(), o, args[0], cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.stateDir, "state-dir", o.stateDir, "`directory` of the host key and the paired guests")
	f.DurationVar(&o.expires, "expires", o.expires, "how long the token stays valid")
	f.StringVar(&o.ctlSock, "control-socket", "", "control socket `path` of the running relay serve, asked where it listens (default $XDG_RUNTIME_DIR/cardshare/relay.sock)")
	f.StringVar(&o.dial, "dial", "", "the host connects to the guest's agent at `address` (HOST:PORT or vsock://CID:PORT) instead of the guest connecting to the host")
	cmdutil.PolicyFlags(f, &o.readers, &o.control)
	return cmd
}

func runRelayPair(ctx context.Context, o *relayPairOptions, name string, stdout io.Writer) error {
	if o.expires <= 0 {
		return cmdutil.Usage("--expires must be positive", "for example --expires 30m")
	}
	policy, err := cmdutil.GuestPolicy(o.readers, o.control)
	if err != nil {
		return err
	}
	state, err := trust.OpenHostState(o.stateDir)
	if err != nil {
		return err
	}
	if err := relay.CheckAddr(o.dial); o.dial != "" && err != nil {
		return err
	}
	now := time.Now()
	tok, err := state.PairWith(name, trust.PairOptions{Dial: o.dial, Policy: policy}, o.expires, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pairing token for %s, valid once until %s:\n\n    %s\n\n", name, now.Add(o.expires).Format("15:04:05"), tok)
	if policy != nil {
		fmt.Fprintf(stdout, "%s\n\n", control.PolicyText(policy.Readers, policy.DenyControl, false))
	}
	if addr, note := joinAddr(ctx, o.ctlSock, state.Dir()); o.dial == "" && note == "" {
		fmt.Fprintf(stdout, `in the guest (the running `+"`cardshare relay serve`"+` listens on %s), with the
token typed at its prompt (or piped, or --token-file):

    cardshare relay join %s
`, addr, addr)
	} else if o.dial == "" {
		fmt.Fprintf(stdout, `in the guest, with %s,
and the token typed at its prompt (or piped, or --token-file):

    cardshare relay join %s
`, note, addr)
	} else {
		fmt.Fprintf(stdout, `in the guest, listening where this host will connect to it (%s), and the
token typed at its prompt (or piped, or --token-file):

    cardshare relay join --listen %s

`+"`cardshare relay serve`"+` on this host connects there, for the pairing and from then on.
`, o.dial, listenSide(o.dial))
	}
	fmt.Fprintf(stdout, "\nhost key %s (the token carries it; the guest checks it)\n", state.Fingerprint())
	return nil
}

// listenSide is what a guest listens on for a host that dials addr: the
// same port on every address (behind NAT the guest's own address differs),
// or the port on the guest's own vsock CID.
func listenSide(addr string) string {
	if rest, ok := strings.CutPrefix(addr, "vsock://"); ok {
		if _, port, ok := strings.Cut(rest, ":"); ok {
			return "vsock://:" + port
		}
	}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return ":" + port
	}
	return addr
}

// relayArgs wants n positional arguments, with a usage error otherwise.
func relayArgs(n int, msg, hint string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return cmdutil.Usage(msg, hint)
		}
		return nil
	}
}

// joinAddr is the address for `relay join`, from the running `relay serve`
// of the same state directory when there is one (its control socket says
// where it listens): complete when it listens on one address, else with
// HOST for the part only the user knows, and a note saying what to fill in.
func joinAddr(ctx context.Context, p, stateDir string) (addr, note string) {
	const unknown = "HOST:PORT"
	fill := "the address where `cardshare relay serve` listens (vsock://2:PORT over vsock)"
	if p == "" {
		var err error
		if p, err = control.DefaultRelaySocket(); err != nil {
			return unknown, fill
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := control.Query(ctx, p)
	if err != nil || s.Mode != control.ModeRelay || s.Listen == "" || filepath.Clean(s.Config) != filepath.Clean(stateDir) {
		return unknown, fill
	}
	if strings.HasPrefix(s.Listen, "vsock://") {
		_, port, _ := strings.Cut(strings.TrimPrefix(s.Listen, "vsock://"), ":")
		return "vsock://2:" + port, "" // the host is CID 2 from a guest
	}
	host, port, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return unknown, fill
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return net.JoinHostPort("HOST", port), "HOST the address of this host as the guest reaches it (the running relay serve listens on " + s.Listen + ")"
	}
	return s.Listen, ""
}
