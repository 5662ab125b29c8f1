package qemucmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/ccid"
	"github.com/cardshare/cardshare/internal/ccidconf"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/vm"
	"github.com/cardshare/cardshare/up"
)

type attachOptions struct {
	chardevs  []string
	reader    string
	listen    bool
	exclusive bool
	t1        bool
	control   string
}

func newAttachCmd(g *cmdutil.Globals) *cobra.Command {
	o := &attachOptions{}
	cmd := &cobra.Command{
		Use:   "attach [DOMAIN] --reader GLOB [--chardev unix:PATH|tcp:HOST:PORT]...",
		Short: "Pass host readers to a QEMU guest as emulated USB CCID readers, until Ctrl-C",
		Long: `attach binds the host readers matching --reader to the ccid-card-passthru
chardevs of a QEMU guest and serves them until SIGINT or SIGTERM (SIGHUP is
ignored): the guest sees each reader, the card's ATR, its removal, and gets
its APDUs answered by the host card.

With DOMAIN, the chardevs are read from the libvirt domain's
<smartcard mode='passthrough'> devices (virsh dumpxml; qemu:///session, then
qemu:///system): a source in mode 'bind' is dialed, one in mode 'connect' is
listened on. With --chardev (repeatable, one per emulated reader) they are
given directly: unix:PATH or tcp:HOST:PORT. cardshare dials a QEMU that
listens (server=on) or, with --listen, listens for a QEMU that connects
(a Unix socket mode 0600; TCP on loopback only); either way it reconnects
when QEMU restarts. ` + "`cardshare qemu snippet`" + ` prints the VM side.

The host's readers come from its PC/SC library (libpcsclite, winscard.dll,
PCSC.framework). ` + "`cardshare status`" + ` shows the emulated readers while attach
runs (control socket qemu-NAME.sock beside up's control.sock).

` + limits,
		Example: `  cardshare qemu attach win11 --reader 'Yubico YubiKey*'
  cardshare qemu attach --chardev unix:/run/cardshare/vm-ccid0.sock --reader 'Yubico*'
  cardshare qemu attach --listen --chardev unix:$XDG_RUNTIME_DIR/cardshare/vm-ccid0.sock --reader '*'
  cardshare qemu attach --chardev tcp:127.0.0.1:35963 --reader 'Yubico*' --exclusive`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return cmdutil.Usage(fmt.Sprintf("qemu attach takes one libvirt domain, got %d", len(args)), "run one `cardshare qemu attach` per VM")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			domain := ""
			if len(args) == 1 {
				domain = args[0]
			}
			return runAttach(cmd.Context(), g, o, domain, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.chardevs, "chardev", nil, "chardev of a ccid-card-passthru device: unix:`PATH` or tcp:HOST:PORT (repeat for more readers)")
	f.StringVar(&o.reader, "reader", "", "host readers to pass, a `glob` such as 'Yubico YubiKey*' ('*': every reader)")
	f.BoolVar(&o.listen, "listen", false, "listen on the --chardev sockets for QEMU to connect (default: dial QEMU's)")
	f.BoolVar(&o.exclusive, "exclusive", false, "take the card exclusively while it is present (default: shared, in transactions)")
	f.BoolVar(&o.t1, "t1", false, "pass T=1-only ATRs unchanged: only for usb-ccid,x-t1-support=on (newer QEMU than 7.2)")
	f.StringVar(&o.control, "control-socket", "", "control socket `path` for `cardshare status` (default qemu-NAME.sock beside up's control.sock)")
	return cmd
}

// endpoints parses --chardev, or reads the domain's.
func (o *attachOptions) endpoints(ctx context.Context, domain string) ([]ccid.Endpoint, error) {
	if len(o.chardevs) == 0 {
		if domain == "" {
			return nil, cmdutil.Usage("qemu attach needs a libvirt domain or --chardev", "give the domain (`cardshare qemu attach win11 --reader ...`) or the chardev socket (`--chardev unix:/run/cardshare/vm-ccid0.sock`); `cardshare qemu snippet` prints both sides")
		}
		if o.listen {
			return nil, cmdutil.Usage("--listen applies to --chardev only", "a libvirt domain says who listens: its source mode 'connect' makes cardshare listen")
		}
		eps, err := ccidconf.DomainChardevs(ctx, vm.ExecRunner, domain)
		if err != nil {
			// One %w: ccidconf's error joins two, which PrintError would
			// print as two errors.
			return nil, fmt.Errorf("qemu attach: %w", err)
		}
		return eps, nil
	}
	var eps []ccid.Endpoint
	for _, s := range o.chardevs {
		ep, err := ccid.ParseEndpoint(s, o.listen)
		if err != nil {
			return nil, cmdutil.Usage(err.Error(), "write unix:/path/to/ccid.sock or tcp:127.0.0.1:PORT, as in QEMU's -chardev socket,path=... or host=...,port=... (a listening TCP chardev must be on loopback)")
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

func runAttach(ctx context.Context, g *cmdutil.Globals, o *attachOptions, domain string, stdout io.Writer) error {
	// SIGHUP's default action ends the process; attach has nothing to
	// reload, so a closed terminal or a reload by a service manager must
	// not drop the guest's card.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.reader == "" {
		return cmdutil.Usage("qemu attach needs --reader", "name the host readers to pass, e.g. --reader 'Yubico YubiKey*' (`pcsc_scan` or `cardshare doctor` lists them; --reader '*' passes every reader)")
	}
	if _, err := path.Match(o.reader, ""); err != nil {
		return cmdutil.Usage(fmt.Sprintf("--reader %q is malformed", o.reader), `patterns use * ? and [...], as shell globs do: --reader "Yubico YubiKey*"`)
	}
	eps, err := o.endpoints(ctx, domain)
	if err != nil {
		return err
	}
	log := g.Logger()
	lib, err := scard.Open()
	if err != nil {
		return err
	}
	name := domain
	if name == "" {
		name = chardevName(eps[0])
	}
	b, err := ccid.New(ccid.NewSCardHost(lib), &ccid.Config{Reader: o.reader, Chardevs: eps, Exclusive: o.exclusive, T1: o.t1, Logger: log})
	if err != nil {
		return err
	}
	ctl := o.control
	if ctl == "" {
		if ctl, err = control.DefaultQEMUSocket(name); err != nil {
			return err
		}
	}
	started := time.Now()
	status := func() control.StatusV1 {
		gs := control.GuestStatus{Name: name, VM: domain, Readers: []string{o.reader}}
		up.CCIDStatus(&gs, b.Status())
		return control.StatusV1{Version: control.StatusVersion, Mode: control.ModeQEMUCCID, PID: os.Getpid(),
			Started: started.UTC(), Loaded: started.UTC(), Host: control.HostStatus{PCSCDSocket: lib.String()},
			Guests: []control.GuestStatus{gs}}
	}
	if ln, err := control.Listen(ctl); err != nil {
		log.Warn("no control socket: `cardshare status` will not show this attach", "err", err)
	} else {
		srv := control.Serve(ln, status, log)
		defer srv.Close()
	}
	for _, ep := range eps {
		fmt.Fprintf(stdout, "%s: emulated reader on %s for host readers %q\n", name, ep, o.reader)
	}
	log.Info("qemu attach", "guest", name, "chardevs", len(eps), "reader", o.reader, "exclusive", o.exclusive, "t1", o.t1, "pcsc", lib.String())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				log.Info("stopped")
				return nil
			}
			return err
		case <-hup:
			log.Info("SIGHUP ignored: qemu attach has nothing to reload (stop it with SIGINT or SIGTERM)")
		}
	}
}

// chardevName names a guest without a domain after its first chardev: the
// socket file's name without its extension, or HOST-PORT for TCP.
func chardevName(e ccid.Endpoint) string {
	if e.Network == "tcp" {
		return strings.NewReplacer(":", "-", "[", "", "]", "").Replace(e.Address)
	}
	return strings.TrimSuffix(filepath.Base(e.Address), filepath.Ext(e.Address))
}
