package main

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

func newServiceCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Run `cardshare up` as a systemd service",
	}
	cmd.AddCommand(newServiceInstallCmd(g))
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
	file, _, err := checkConfig(o.config, stderr)
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
	unit, err := service.UnitFile(bin, file)
	if err != nil {
		return err
	}
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
