package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/guestsetup"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/internal/vm"
)

func newGuestCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guest",
		Short: "Point a guest's programs at the forwarded socket",
		Long: `guest setup writes, over SSH, what makes the programs of the guest's login user
find the socket that cardshare expose forwards; guest env prints the export
line inside a guest that has the cardshare binary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newGuestSetupCmd(g), newGuestEnvCmd())
	return cmd
}

type guestSetupOptions struct {
	sshConfig   string
	acceptNew   bool
	guestSocket string
	system      bool
	undo        bool
}

func newGuestSetupCmd(g *cmdutil.Globals) *cobra.Command {
	o := &guestSetupOptions{}
	cmd := &cobra.Command{
		Use:   "setup [--undo] [--system] GUEST",
		Short: "Set PCSCLITE_CSOCK_NAME for the guest user's programs, over SSH",
		Long: `setup connects to GUEST over SSH (as expose does; GUEST may also be a VM name,
see cardshare resolve) and writes, with plain sh and no cardshare binary in the
guest:

  ~/.profile                a marked block (# >>> cardshare >>> ... # <<< cardshare <<<)
                            that exports PCSCLITE_CSOCK_NAME; also in ~/.bash_profile
                            or ~/.bash_login, and ~/.zprofile, when the login shell
                            reads those instead. Reaches login shells: ssh logins,
                            console logins, sh -l / bash -l.
  ~/.config/environment.d/cardshare.conf
                            on systemd guests: systemd user services and graphical
                            sessions started by the user manager.

It is idempotent, changes nothing when something would fail (a file it cannot
write, sudo that wants a password), and --undo removes exactly what it added,
restoring each file's bytes.

--system also serves programs that ignore the variable and dial
/run/pcscd/pcscd.comm (Go's go-libpcsclite, Flatpak sandboxes): it stops and
masks the guest's pcscd.socket and pcscd.service and makes
/run/pcscd/pcscd.comm a link to the forwarded socket, from
/etc/tmpfiles.d/cardshare.conf so it survives reboots. It needs root in the
guest: log in as root, or sudo without a password (it runs sudo -n and never
asks). Guests without systemd (the BSDs, Alpine) get the profile part and a
note about the rest.

Programs that are already running keep their environment: log in again.`,
		Example: `  cardshare guest setup myvm
  cardshare guest setup --system myvm
  cardshare guest setup --undo --system myvm
  cardshare guest setup --guest-socket /home/me/.pcsc/pcscd.comm myvm`,
		Args: exactGuest("guest setup"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGuestSetup(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	cmdutil.SSHConfigFlag(f, &o.sshConfig)
	cmdutil.AcceptNewFlag(f, &o.acceptNew)
	cmdutil.GuestSocketFlag(f, &o.guestSocket, ", as given to expose (default: expose's default for the login user)")
	f.BoolVar(&o.system, "system", false, "also mask the guest's pcscd and link /run/pcscd/pcscd.comm to the socket (needs root or sudo -n in the guest)")
	f.BoolVar(&o.undo, "undo", false, "remove what an earlier setup added (with --system, the system part too)")
	return cmd
}

// exactGuest wants one GUEST argument.
func exactGuest(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return cmdutil.Usage(fmt.Sprintf("%s needs one guest, got %d", what, len(args)), "name it like ssh does: `cardshare "+what+" myvm`")
		}
		return nil
	}
}

func runGuestSetup(ctx context.Context, g *cmdutil.Globals, o *guestSetupOptions, name string, stdout io.Writer) error {
	if o.undo && o.guestSocket != "" {
		return cmdutil.Usage("--undo takes no --guest-socket", "undo finds what setup added by its markers; drop --guest-socket")
	}
	t, _, err := vm.Resolve(ctx, name, o.sshConfig)
	if err != nil {
		return &forward.GuestError{Guest: name, Err: err}
	}
	c, err := sshdial.Dial(ctx, t, sshdial.DialOptions{AcceptNew: o.acceptNew, Prompt: terminalPrompt(), Logger: g.Logger()})
	if err != nil {
		return &forward.GuestError{Guest: name, Err: err}
	}
	defer c.Close()
	res, err := guestsetup.Setup(ctx, c, guestsetup.Options{Socket: o.guestSocket, System: o.system, Undo: o.undo})
	if err == nil || res.Changed() { // what was done before a failure
		printSetup(stdout, name, res, o.undo)
	}
	if err != nil {
		return &forward.GuestError{Guest: name, Err: err}
	}
	return nil
}

// printSetup prints what setup did, a line per file, then the notes.
func printSetup(w io.Writer, name string, res guestsetup.Result, undo bool) {
	if len(res.Changes) == 0 && len(res.Notes) == 0 {
		return
	}
	switch {
	case undo:
		fmt.Fprintf(w, "%s: undoing cardshare guest setup\n", name)
	default:
		fmt.Fprintf(w, "%s: pointing the login user's programs at %s\n", name, res.Socket)
	}
	width := 0
	for _, c := range res.Changes {
		width = max(width, len(c.Path))
	}
	for _, c := range res.Changes {
		fmt.Fprintf(w, "  %-*s  %s\n", width+1, c.Path+":", c.Action)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if !undo && res.Changed() {
		fmt.Fprintf(w, "%s: new logins see PCSCLITE_CSOCK_NAME; running programs keep their environment until you log in again\n", name)
	}
}

// newSetupOnUp returns the guest setup that `expose --setup-guest` and
// setup_guest run when a forward comes up, or nil unless enabled.
func newSetupOnUp(ctx context.Context, enabled bool, guests []forward.Guest, dial sshdial.DialOptions, out io.Writer, log *slog.Logger) *guestsetup.Auto {
	if !enabled {
		return nil
	}
	targets := map[string]sshdial.Target{}
	for _, gu := range guests {
		targets[gu.Name] = gu.Target
	}
	return guestsetup.NewAuto(ctx, targets, dial, setupReporter(out, log))
}

// setupReporter prints what an automatic guest setup changed, and logs
// what it did not need to change and why it failed (the forward stays up).
func setupReporter(out io.Writer, log *slog.Logger) func(guest, socket string, res guestsetup.Result, err error) {
	return func(guest, socket string, res guestsetup.Result, err error) {
		if err != nil {
			attrs := []any{"guest", guest, "err", err}
			if h := cmdutil.Hint(err); h != "" {
				attrs = append(attrs, "hint", h)
			}
			log.Error("guest setup failed; the forward stays up", attrs...)
			return
		}
		if res.Changed() || len(res.Notes) > 0 {
			printSetup(out, guest, res, false)
		} else {
			log.Info("guest already set up", "guest", guest, "socket", socket)
		}
	}
}

type guestEnvOptions struct {
	socket string
}

func newGuestEnvCmd() *cobra.Command {
	o := &guestEnvOptions{}
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print the export line for the default guest socket (run inside the guest)",
		Long: `env prints the sh line that points programs at the socket cardshare expose
listens on by default for the user running it:
$XDG_RUNTIME_DIR/cardshare/pcscd.comm, else ~/.cardshare/pcscd.comm, else
/tmp/cardshare-UID/pcscd.comm. Run it inside a guest that has the cardshare
binary, e.g. from a shell profile. Guests without the binary need nothing:
use cardshare guest setup from the host.`,
		Example: `  eval "$(cardshare guest env)"
  cardshare guest env --socket /home/me/.pcsc/pcscd.comm >> ~/.profile`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sock := o.socket
			if sock == "" {
				sock = unixsock.GuestSocketFor(os.Getenv, os.Getuid())
			}
			fmt.Fprintln(cmd.OutOrStdout(), guestsetup.ExportLine(sock))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.socket, "socket", "", "socket `path` given to expose --guest-socket (default: expose's default)")
	return cmd
}
