package servicecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/service"
)

type options struct {
	config string
	user   bool
	binary string
	dryRun bool
}

// ConfigChecker loads the config file that flag names (the default one
// for "") and prints its warnings on stderr; it returns the file's
// absolute path.
type ConfigChecker func(flag string, stderr io.Writer) (string, error)

// New is `cardshare service`.
func New(g *cmdutil.Globals, cc ConfigChecker) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Run `cardshare up` as a per-user service (systemd, launchd or a Windows logon task)",
	}
	cmd.AddCommand(newInstallCmd(g, cc), newUninstallCmd())
	return cmd
}

func newInstallCmd(g *cmdutil.Globals, cc ConfigChecker) *cobra.Command {
	o := &options{user: true}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install and start a per-user service that runs `cardshare up`",
		Long: `install checks the config file, then installs a service that runs
` + "`cardshare up --config FILE`" + ` as you, with your SSH keys, and starts it:

Linux     the systemd user unit ~/.config/systemd/user/cardshare.service
          (restarted on failure; ` + "`systemctl --user reload cardshare`" + ` sends SIGHUP,
          which reloads the file), enabled and started with
          ` + "`systemctl --user enable --now`" + `. Where systemctl cannot reach a user
          manager (a container, an SSH session without one), it writes the
          unit and prints the commands to run instead. Logs go to the
          journal: ` + "`journalctl --user -u cardshare`" + `.
macOS     the LaunchAgent ~/Library/LaunchAgents/com.github.cardshare.up.plist,
          loaded into your GUI session with ` + "`launchctl bootstrap gui/UID`" + `
          (restarted on failure; logs in ~/Library/Logs/cardshare/up.log).
Windows   a Task Scheduler task "cardshare" that starts at your logon, in your
          session, without a stored password or administrator rights
          (` + "`schtasks /Create /XML`" + `; logs in %LOCALAPPDATA%\cardshare\up.log, through
          ` + "`up --log-file`" + `).

Running it again updates the service and restarts it when its file changed.
` + "`cardshare service uninstall`" + ` removes it.

A systemd user service does not see the SSH_AUTH_SOCK of your login shell:
keys in ssh-agent need ` + "`systemctl --user import-environment SSH_AUTH_SOCK`" + ` (or
an IdentityAgent in ssh_config); unencrypted key files work as they are. A
LaunchAgent gets launchd's agent socket, a logon task the Windows OpenSSH
agent's pipe.`,
		Example: `  cardshare service install
  cardshare service install --config ~/vms.yaml
  cardshare service install --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.user {
				return cmdutil.Usage("only user units are supported", "drop --user=false: cardshare runs as you, with your SSH keys")
			}
			return runInstall(cmd.Context(), cc, o, cmd.OutOrStdout(), g.Stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config `file` the service runs from (default $XDG_CONFIG_HOME/cardshare/config.yaml)")
	f.BoolVar(&o.user, "user", true, "install a per-user service (the only kind so far)")
	f.StringVar(&o.binary, "binary", "", "cardshare `path` the service runs (default: this program)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the service file, where it would go and the commands; change nothing")
	return cmd
}

func runInstall(ctx context.Context, cc ConfigChecker, o *options, stdout, stderr io.Writer) error {
	// A service that cannot start would only restart in a loop: check first.
	file, err := cc(o.config, stderr)
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
	plan, spec, err := servicePlan(runtime.GOOS, bin, file)
	if err != nil {
		return err
	}
	if o.dryRun {
		return printPlan(stdout, runtime.GOOS, plan, spec)
	}

	run, deferred := serviceRunner(runtime.GOOS)
	change, err := service.Install(ctx, plan, run)
	var ce *service.CommandError
	if err == nil || errors.As(err, &ce) { // the file is in place
		if change == service.Unchanged {
			fmt.Fprintf(stdout, "%s is up to date\n", plan.Path)
		} else {
			fmt.Fprintf(stdout, "wrote %s\n", plan.Path)
		}
	}
	if err != nil {
		return err
	}
	if !deferred.print(stdout, "start the service") {
		fmt.Fprintf(stdout, "\n%s is enabled and started.\n", serviceName(runtime.GOOS))
	}
	printServiceNotes(stdout, runtime.GOOS, plan, file)
	return nil
}

func newUninstallCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop the service and remove what `service install` wrote",
		Long: `uninstall stops the service that ` + "`cardshare service install`" + ` set up and
removes its file: on Linux it runs ` + "`systemctl --user disable --now cardshare.service`" + `,
removes the user unit and reloads systemd; on macOS it boots the LaunchAgent
out of your GUI session and removes its plist; on Windows it ends and
deletes the logon task and removes its XML file. The config file and the log
files stay. A service that is not installed is not an error.`,
		Example: `  cardshare service uninstall
  cardshare service uninstall --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUninstall(cmd.Context(), dryRun, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be stopped and removed; change nothing")
	return cmd
}

func runUninstall(ctx context.Context, dryRun bool, stdout io.Writer) error {
	// Only Path and the commands matter here, not what the service runs.
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the cardshare binary: %w", err)
	}
	file := "config.yaml"
	plan, _, err := servicePlan(runtime.GOOS, bin, file)
	if err != nil {
		return err
	}
	if dryRun {
		fmt.Fprintf(stdout, "# would remove %s\n", plan.Path)
		for _, c := range append(plan.Uninstall, plan.AfterRemove...) {
			fmt.Fprintf(stdout, "# would run: %s\n", c)
		}
		return nil
	}
	if err := checkOurs(plan.Path); err != nil {
		return err
	}
	existed := fileExists(plan.Path)
	run, deferred := serviceRunner(runtime.GOOS)
	if !existed {
		// Nothing was installed, or only half: undo what is there, and
		// let the commands that find nothing fail quietly.
		strict := run
		run = func(ctx context.Context, c service.Command) error {
			c.MayFail = true
			_ = strict(ctx, c)
			return nil
		}
	}
	if err := service.Uninstall(ctx, plan, run); err != nil {
		return err
	}
	if existed {
		fmt.Fprintf(stdout, "removed %s\n", plan.Path)
	} else {
		fmt.Fprintf(stdout, "%s is not installed (no %s)\n", serviceName(runtime.GOOS), plan.Path)
	}
	if !deferred.print(stdout, "stop the service") {
		fmt.Fprintf(stdout, "%s is stopped and removed.\n", serviceName(runtime.GOOS))
	}
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
