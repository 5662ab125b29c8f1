package servicecmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/service"
)

type serviceOptions struct {
	config string
	user   bool
	binary string
	dryRun bool
}

// New is `cardshare service` and its subcommands.
func New(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Run `cardshare up` as a systemd service",
	}
	cmd.AddCommand(newServiceInstallCmd(g), newServiceUninstallCmd())
	return cmd
}

func newServiceInstallCmd(g *cmdutil.Globals) *cobra.Command {
	o := &serviceOptions{user: true}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Write and enable a systemd user unit that runs `cardshare up`",
		Long: `install checks the config file, writes the systemd user unit
~/.config/systemd/user/cardshare.service that runs ` + "`cardshare up --config FILE`" + `
(restarted on failure; ` + "`systemctl --user reload cardshare`" + ` sends SIGHUP, which
reloads the file), and enables and starts it with ` + "`systemctl --user enable --now`" + `.
Where systemctl cannot reach a user manager (a container, an SSH session
without one), it writes the unit and prints the commands to run instead.

Logs go to the journal: ` + "`journalctl --user -u cardshare`" + `.

A user service does not see the SSH_AUTH_SOCK of your login shell: keys in
ssh-agent need ` + "`systemctl --user import-environment SSH_AUTH_SOCK`" + ` (or an
IdentityAgent in ssh_config); unencrypted key files work as they are.`,
		Example: `  cardshare service install
  cardshare service install --config ~/vms.yaml
  cardshare service install --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.user {
				return cmdutil.Usage("only user units are supported", "drop --user=false: cardshare runs as you, with your SSH keys")
			}
			return runServiceInstall(cmd.Context(), o, cmd.OutOrStdout(), g.Stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config `file` the service runs from (default $XDG_CONFIG_HOME/cardshare/config.yaml)")
	f.BoolVar(&o.user, "user", true, "install a systemd user unit (the only kind so far)")
	f.StringVar(&o.binary, "binary", "", "cardshare `path` the unit runs (default: this program)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the unit and where it would go; change nothing")
	return cmd
}

func runServiceInstall(ctx context.Context, o *serviceOptions, stdout, stderr io.Writer) error {
	// A unit that cannot start would only restart in a loop: check first.
	file, _, err := cmdutil.CheckConfig(o.config, stderr)
	if err != nil {
		return err
	}
	bin := o.binary
	if bin == "" {
		if bin, err = os.Executable(); err == nil {
			bin, err = filepath.EvalSymlinks(bin)
		}
		if err != nil {
			return fmt.Errorf("find the cardshare binary: %w", err)
		}
		if strings.Contains(bin, string(filepath.Separator)+"go-build") {
			return cmdutil.WithHint(fmt.Errorf("cardshare runs from a temporary build (%s) that will be gone", bin),
				"install it first (`go install ./cmd/cardshare`), or name the binary with --binary")
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	dir, err := service.UserUnitDir()
	if err != nil {
		return fmt.Errorf("find the systemd user unit directory: %w", err)
	}
	path := filepath.Join(dir, service.UnitName)
	unit := service.UnitFile(bin, file)
	if o.dryRun {
		fmt.Fprintf(stdout, "# %s\n%s", path, unit)
		return nil
	}

	changed, existed, err := service.Write(path, unit)
	if err != nil {
		return err
	}
	if changed {
		fmt.Fprintf(stdout, "wrote %s\n", path)
	} else {
		fmt.Fprintf(stdout, "%s is up to date\n", path)
	}

	steps := [][]string{{"daemon-reload"}, {"enable", "--now", service.UnitName}}
	if changed && existed {
		steps = append(steps, []string{"try-restart", service.UnitName})
	}
	if why := service.Systemctl(ctx, steps[0]...); why != "" {
		fmt.Fprintf(stdout, "\nsystemctl cannot reach your systemd user manager here (%s).\nRun these in a login session of this user to start the service:\n", why)
		for _, s := range steps {
			fmt.Fprintf(stdout, "    systemctl --user %s\n", strings.Join(s, " "))
		}
	} else {
		for _, s := range steps[1:] {
			if why := service.Systemctl(ctx, s...); why != "" {
				return cmdutil.WithHint(fmt.Errorf("systemctl --user %s: %s", strings.Join(s, " "), why),
					"see `systemctl --user status cardshare` and `journalctl --user -u cardshare`")
			}
		}
		fmt.Fprintf(stdout, "\n%s is enabled and started.\n", service.UnitName)
	}
	fmt.Fprintf(stdout, `
status:  cardshare status
logs:    journalctl --user -u cardshare -f
reload:  systemctl --user reload cardshare     (after editing %s)
Without a login, user services start at boot only with: loginctl enable-linger %s
Keys in ssh-agent: systemctl --user import-environment SSH_AUTH_SOCK (or IdentityAgent in ssh_config)
`, file, currentUserName())
	return nil
}

func currentUserName() string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if u := os.Getenv(k); u != "" {
			return u
		}
	}
	return "$USER"
}

func newServiceUninstallCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall",
		Short: "Stop, disable and remove the systemd user unit of `service install`",
		Long: `uninstall stops and disables the user unit that ` + "`service install`" + ` wrote
(` + "`systemctl --user disable --now`" + `), deletes ~/.config/systemd/user/cardshare.service
and reloads systemd. It leaves the config file alone, and refuses to delete
a unit file that cardshare did not write. Running it twice is fine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServiceUninstall(cmd.Context(), cmd.OutOrStdout())
		},
	}
}

func runServiceUninstall(ctx context.Context, stdout io.Writer) error {
	dir, err := service.UserUnitDir()
	if err != nil {
		return fmt.Errorf("find the systemd user unit directory: %w", err)
	}
	path := filepath.Join(dir, service.UnitName)
	existed, err := service.Ours(path)
	if err != nil {
		return cmdutil.WithHint(err, "remove or rename it yourself if it is no longer wanted")
	}
	if existed {
		// Stop it first, while systemd still knows the unit.
		if why := service.Systemctl(ctx, "disable", "--now", service.UnitName); why != "" {
			fmt.Fprintf(stdout, "systemctl --user disable --now %s: %s\n", service.UnitName, why)
		}
	}
	if existed, err = service.Remove(path); err != nil {
		return err
	}
	if !existed {
		fmt.Fprintf(stdout, "%s is not installed (no %s)\n", service.UnitName, path)
		return nil
	}
	fmt.Fprintf(stdout, "removed %s\n", path)
	if why := service.Systemctl(ctx, "daemon-reload"); why != "" {
		fmt.Fprintf(stdout, "systemctl cannot reach your systemd user manager here (%s); run `systemctl --user daemon-reload` in a login session\n", why)
	}
	return nil
}
