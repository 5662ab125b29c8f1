package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/up"
)

const configExample = `version: 1
host:
  backend: auto                         # auto, socket (pcscd) or native (the system's PC/SC API)
  pcscd_socket: /run/pcscd/pcscd.comm   # default: $PCSCLITE_CSOCK_NAME, else this
  keepalive: 5s                         # how often each guest is checked
  log_level: info                       # debug, info, warn or error
  log_format: text                      # text or json
  # ssh_config: ~/vms/ssh_config       # like ssh -F; default: ssh's own files
  accept_new: false                     # record unknown host keys
guests:
  - name: devvm                         # default: the destination or vm
    destination: dev@127.0.0.1:2222     # ssh_config alias or [user@]host[:port]
    socket: /run/user/1000/cardshare/pcscd.comm   # default: a private path
    setup_guest: true                   # set PCSCLITE_CSOCK_NAME in the guest
  - vm: build                           # a VM name instead of a destination
    readers: ["Yubico YubiKey*"]        # the readers the guest sees; default all
    control: deny                       # refuse SCardControl; default allow
    audit: true                         # log every PC/SC call; default false
  - vm: win11                           # a libvirt domain: QEMU's emulated USB CCID
    ccid:                               # reader, no guest software (see qemu --help)
      reader: "Yubico*"                 # host readers to pass (required; "*": all)
      chardev: unix:/run/vm/ccid.sock   # default: the domain's passthrough smartcards
      listen: false                     # cardshare listens, QEMU connects
      exclusive: false                  # take the card for the guest
      t1: false                         # usb-ccid,x-t1-support=on`

func newConfigCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the config file that `cardshare up` runs from",
		Long: `The config file lists the guests that ` + "`cardshare up`" + ` keeps exposed, with the
host options. It is ~/.config/cardshare/config.yaml ($XDG_CONFIG_HOME is
honoured), or the file given with --config. Every key is optional but the
guest's destination (or vm); unknown keys are errors. A complete example:

` + indent(configExample) + `

readers, control and audit are the guest's reader policy. readers lists
patterns (* ? [...], as shell globs) of the host readers the guest sees: the
others are absent from its reader lists, and connecting to one fails with
"Unknown reader". pcscd names readers "NAME XX YY", so end a pattern with *.
control: deny refuses SCardControl (reader escape commands) with "not
supported". audit: true logs one line per PC/SC call of the guest: command,
reader, return code, duration and sizes, never data.`,
	}
	cmd.AddCommand(newConfigCheckCmd(g))
	return cmd
}

type configCheckOptions struct {
	config string
}

func newConfigCheckCmd(g *cmdutil.Globals) *cobra.Command {
	o := &configCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Parse and validate the config file, and resolve every guest",
		Long: `check reads the config file strictly, reports every problem with its file:line
and a hint, warns about reader patterns that match no reader, and resolves each
guest's SSH destination (as ssh -G does) to show the address and user that
` + "`cardshare up`" + ` would connect to. It does not connect. The exit code is 0 when
the file is usable and every guest resolves, 1 otherwise.`,
		Example: `  cardshare config check
  cardshare config check --config ./vms.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigCheck(cmd.Context(), o, cmd.OutOrStdout(), g.Stderr)
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "config `file` (default $XDG_CONFIG_HOME/cardshare/config.yaml)")
	return cmd
}

func runConfigCheck(ctx context.Context, o *configCheckOptions, stdout, stderr io.Writer) error {
	file, c, err := cmdutil.CheckConfig(o.config, stderr)
	if err != nil {
		return err
	}
	h := c.Host
	pcscd := h.PCSCDSocket
	if pcscd == "" {
		pcscd = cmdutil.DefaultPCSCDSocket() + " (default)"
	}
	sshConfig := h.SSHConfig
	if sshConfig == "" {
		sshConfig = "ssh's default"
	}
	fmt.Fprintf(stdout, "%s: %s\n", file, plural(len(c.Guests), "guest"))
	fmt.Fprintf(stdout, "host pcscd %s, keepalive %v, ssh_config %s, accept_new %v, log %s %s\n",
		pcscd, h.Keepalive, sshConfig, h.AcceptNew, h.LogLevel, h.LogFormat)
	if len(c.Guests) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	var errs []error
	var warns []string
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GUEST\tLINE\tDESTINATION\tADDRESS\tUSER\tGUEST SOCKET\tSETUP")
	for _, g := range c.Guests {
		if g.CCID != nil {
			where := "-"
			if eps, err := up.CCIDChardevs(ctx, g); err != nil {
				errs = append(errs, &up.PlacedError{Where: fmt.Sprintf("%s:%d: guest %s", file, g.Line, g.Name), Err: err})
			} else {
				where = plural(len(eps), "chardev")
			}
			fmt.Fprintf(tw, "%s\t%d\tqemu ccid %q\t%s\t-\t-\t-\n", g.Name, g.Line, g.CCID.Reader, where)
			continue
		}
		dest := g.Destination
		if g.VM != "" {
			dest = "vm " + g.VM
		}
		addr, user := "-", "-"
		if t, src, err := up.Lookup(ctx, g, h.SSHConfig); err != nil {
			errs = append(errs, &up.PlacedError{Where: fmt.Sprintf("%s:%d: guest %s", file, g.Line, g.Name), Err: err})
		} else {
			addr, user = t.Addr(), t.User
			if src.Kind != "" {
				dest += " (" + src.Kind + ")"
			}
			if w := up.VMWarning(g, src, h.SSHConfig); w != "" {
				warns = append(warns, fmt.Sprintf("%s:%d: %s", file, g.Line, w))
			}
		}
		sock := g.Socket
		if sock == "" {
			sock = "(private default)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Line, dest, addr, user, sock, yesNo(g.SetupGuest))
	}
	tw.Flush()
	for _, g := range c.Guests {
		if p := policyText(g); p != "" {
			fmt.Fprintf(stdout, "%s: %s\n", g.Name, p)
		}
	}
	// A vm: that nothing knows still works as a host name: a warning.
	for _, w := range warns {
		fmt.Fprintf(stderr, "cardshare: warning: %s\ncardshare: hint: check the name (`cardshare resolve NAME` shows where it leads), or write destination: if it is a host\n", w)
	}
	return errors.Join(errs...)
}

// policyText describes a guest's reader policy, or is empty for none.
func policyText(g config.Guest) string {
	return control.PolicyText(g.Readers, g.Control == "deny", g.Audit)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
