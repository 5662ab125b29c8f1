package relaycmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

type relayServeOptions struct {
	listen      string
	stateDir    string
	backend     string
	pcscdSocket string
	control     string
	audit       bool
	caps        cmdutil.ConnCaps
}

func newRelayServeCmd(g *cmdutil.Globals) *cobra.Command {
	o := &relayServeOptions{listen: ":7743", stateDir: defaultRelayDir(), backend: hostpcsc.Auto, pcscdSocket: cmdutil.DefaultPCSCDSocket()}
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Serve the host pcscd to paired guests",
		Long: `serve listens for paired guests and relays each pcsc-lite connection they carry
to the host pcscd, until Ctrl-C. ADDR is HOST:PORT for TCP, or vsock://:PORT
(vsock://CID:PORT) for VM sockets, which need no guest network.

Guests paired with ` + "`relay pair --dial ADDR`" + ` are connected to instead, at their
address, and reconnected with backoff (1 s doubling to 30 s); --listen none
serves only those.

Every connection starts with a TLS 1.3 handshake in which both ends prove
their pinned keys; a peer without a paired key learns nothing and is cut off
within 10 seconds. Guests paired, revoked or given a reader policy
(` + "`relay policy`" + `) while serve runs take effect at once. --audit logs every
PC/SC call of the guests (command, reader, return code, time, sizes; never
data). Each guest gets its own counters: ` + "`cardshare status`" + ` shows them
(through a control socket, by default relay.sock beside that of
` + "`cardshare up`" + `), and they are logged when a guest detaches.`,
		Example: `  cardshare relay serve --listen 0.0.0.0:7743
  cardshare relay serve --listen vsock://:7743
  cardshare relay serve --listen none       # only dial guests paired with --dial`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return relayError(runRelayServe(cmd.Context(), g, o, cmd.OutOrStdout()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", o.listen, "`address` to listen on: HOST:PORT, vsock://[CID]:PORT, or none")
	f.StringVar(&o.control, "control-socket", "", "control socket `path` for `cardshare status` (default $XDG_RUNTIME_DIR/cardshare/relay.sock)")
	f.StringVar(&o.stateDir, "state-dir", o.stateDir, "`directory` of the host key and the paired guests")
	cmdutil.BackendFlag(f, &o.backend)
	cmdutil.PCSCDSocketFlag(f, &o.pcscdSocket)
	f.BoolVar(&o.audit, "audit", false, "log one line per PC/SC call of the guests (never data)")
	cmdutil.ConnCapsFlags(f, &o.caps)
	return cmd
}

func runRelayServe(ctx context.Context, g *cmdutil.Globals, o *relayServeOptions, stdout io.Writer) error {
	defer cmdutil.OneProc()()
	log := g.Logger()
	// SIGHUP reloads the guest list once the host runs; until then it is
	// only noted (the list is read at start anyway).
	var reload atomic.Pointer[relay.Host]
	stopHup := cmdutil.OnHangup(func() {
		if h := reload.Load(); h != nil {
			log.Info("SIGHUP: reloading the guest list")
			h.Reload()
		}
	})
	defer stopHup()
	started := time.Now()
	limiter, err := o.caps.Limiter(log)
	if err != nil {
		return err
	}
	src, daemon, err := cmdutil.OpenHost(ctx, log, o.backend, o.pcscdSocket)
	if err != nil {
		return err
	}
	defer hostpcsc.Close(src)
	state, err := trust.OpenHostState(o.stateDir)
	if err != nil {
		return err
	}
	if proxied, err := anyProxied(state, o.audit); err != nil {
		return err
	} else if proxied {
		// A reader policy or audit log must read every message.
		if err := pcsc.CheckPolicyDaemon(daemon); err != nil {
			return fmt.Errorf("host pcscd at %s: %w", o.pcscdSocket, err)
		}
	}
	ctl := o.control
	if ctl != "" {
		if err := unixsock.CheckChosenDir(filepath.Dir(ctl)); err != nil {
			return fmt.Errorf("--control-socket: %w", err)
		}
	}
	if ctl == "" {
		if ctl, err = control.DefaultRelaySocket(); err != nil {
			return err
		}
	}
	var ln net.Listener
	listen := ""
	if o.listen != "none" {
		if ln, err = relay.ListenAddr(ctx, o.listen); err != nil {
			return err
		}
		listen = ln.Addr().String()
		if strings.HasPrefix(o.listen, "vsock://") {
			listen = o.listen // as relay join takes it, not vsock's own Addr text
		}
	}
	rc := bridge.Config{Daemon: daemon, Audit: o.audit, Limiter: limiter}
	if l, ok := src.(bridge.Local); ok {
		rc.Local = l // the native backend serves the guest connections itself
	}
	h := relay.NewHost(state, &relay.HostConfig{Logger: log, Dial: src.Dial, Relay: rc})
	stopControl, err := cmdutil.ServeControl(ctl, func() control.StatusV1 {
		return relayStatus(h, state, cmdutil.HostStatus(src, o.pcscdSocket, daemon), daemon, listen, o.audit, started)
	}, log)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	defer stopControl()
	reload.Store(h)
	if ln != nil {
		fmt.Fprintf(stdout, "relay: listening on %s\n", listen)
	} else {
		fmt.Fprintln(stdout, "relay: not listening; dialing the guests paired with --dial")
	}
	fmt.Fprintf(stdout, "relay: host key %s\n", state.Fingerprint())
	err = h.Serve(ctx, ln)
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// relayStatus is the control.StatusV1 document of `relay serve`.
func relayStatus(h *relay.Host, state *trust.HostState, host control.HostStatus, d pcsc.Daemon, listen string, audit bool, started time.Time) control.StatusV1 {
	s := control.StatusV1{
		Version: control.StatusVersion,
		Mode:    control.ModeRelay,
		PID:     os.Getpid(),
		Config:  state.Dir(),
		Listen:  listen,
		Started: started.UTC(),
		Loaded:  started.UTC(),
		Host:    host,
		Guests:  []control.GuestStatus{},
	}
	for _, g := range h.Status() {
		gs := control.GuestStatus{
			Name:              g.Name,
			Address:           g.Addr,
			Since:             g.Since.UTC(),
			GuestProtocol:     clientProtocol(g.Client),
			HostProtocol:      d.Version.String(),
			OpenConnections:   g.Open,
			Connections:       g.Connections,
			FailedConnections: g.Failed,
			BytesUp:           g.BytesUp,
			BytesDown:         g.BytesDown,
			LastError:         g.LastError,
		}
		var p pcsc.Policy
		if g.Policy != nil {
			p = *g.Policy
		}
		gs.SetPolicy(p.Readers, p.DenyControl, audit)
		if g.Dial != "" {
			gs.Address = g.Dial
		}
		switch {
		case g.Connected:
			gs.State = "up"
		case g.Revoked:
			gs.State = "revoked"
		case g.Dialing == "backing-off":
			gs.State = "backing-off"
			at := g.RetryAt.UTC()
			gs.RetryAt = &at
		case g.Dialing != "":
			gs.State = g.Dialing
		default:
			gs.State = "disconnected"
		}
		if g.Since.IsZero() {
			gs.Since = started.UTC()
		}
		s.Guests = append(s.Guests, gs)
	}
	return s
}

// clientProtocol is the guest library's protocol as the host saw it in the
// guest's last connection, "" before its first.
func clientProtocol(v pcsc.Version) string {
	if v == (pcsc.Version{}) {
		return ""
	}
	return v.String()
}

// anyProxied reports whether the guests of state are served through the
// protocol-aware proxy at start: with audit, or when a paired guest has a
// reader policy.
func anyProxied(state *trust.HostState, audit bool) (bool, error) {
	if audit {
		return true, nil
	}
	guests, err := state.Guests()
	if err != nil {
		return false, err
	}
	for _, g := range guests {
		if g.Active() && g.Policy() != nil {
			return true, nil
		}
	}
	return false, nil
}
