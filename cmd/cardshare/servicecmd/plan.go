package servicecmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"unicode/utf16"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/service"
)

// servicePlan is the service of this user that runs bin with the config
// file on goos (runtime.GOOS; tests may name another).
func servicePlan(goos, bin, file string) (service.Plan, service.Spec, error) {
	env := service.Env{XDGConfigHome: os.Getenv("XDG_CONFIG_HOME"), LocalAppData: os.Getenv("LOCALAPPDATA")}
	var err error
	if env.Home, err = os.UserHomeDir(); err != nil && goos != "windows" {
		return service.Plan{}, service.Spec{}, fmt.Errorf("find the home directory: %w", err)
	}
	spec := service.Spec{Binary: bin, Args: service.UpArgs(goos, file, service.LogFile(goos, env)), UID: getuid()}
	if goos == "windows" {
		u, err := user.Current()
		if err != nil {
			return service.Plan{}, spec, fmt.Errorf("find the Windows user for the logon task: %w", err)
		}
		spec.WindowsUser = u.Username
	}
	plan, err := service.PlanFor(goos, spec, env)
	return plan, spec, err
}

// getuid is os.Getuid; tests replace it.
var getuid = os.Getuid

// serviceName names the installed service for the user.
func serviceName(goos string) string {
	switch goos {
	case "darwin":
		return "the LaunchAgent " + service.LaunchdLabel
	case "windows":
		return "the logon task " + service.WindowsTask
	}
	return service.SystemdUnit
}

// printPlan prints what install would write and run (--dry-run).
func printPlan(w io.Writer, goos string, p service.Plan, s service.Spec) error {
	content := string(p.Content)
	if goos == "windows" { // the file is UTF-16; show its text
		x, err := service.TaskXML(s)
		if err != nil {
			return err
		}
		content = x
	}
	fmt.Fprintf(w, "# %s\n%s", p.Path, content)
	for _, c := range p.Install {
		fmt.Fprintf(w, "# then: %s\n", c)
	}
	return nil
}

// printServiceNotes says how to look after the installed service.
func printServiceNotes(w io.Writer, goos string, p service.Plan, file string) {
	fmt.Fprintf(w, "\nstatus:  cardshare status       (the service manager: %s)\n", p.Status)
	fmt.Fprintf(w, "logs:    %s\n", p.Logs)
	for i, c := range p.Reload {
		label := "reload:  "
		if i > 0 {
			label = "         "
		}
		fmt.Fprintf(w, "%s%s\n", label, c)
	}
	fmt.Fprintf(w, "         (after editing %s)\nremove:  cardshare service uninstall\n", file)
	switch goos {
	case "darwin", "windows":
		fmt.Fprintln(w, "The service starts at each login of this user.")
	default:
		fmt.Fprintf(w, "Without a login, user services start at boot only with: loginctl enable-linger %s\n", currentUserName())
		fmt.Fprintln(w, "Keys in ssh-agent: systemctl --user import-environment SSH_AUTH_SOCK (or IdentityAgent in ssh_config)")
	}
}

// deferredSteps are the commands of a plan that could not run because
// systemctl cannot reach a user manager here (a container, an SSH session
// without one): the user runs them in a login session.
type deferredSteps struct {
	why    string
	failed []service.Command // commands that may fail, and did, before the first that may not
	cmds   []service.Command
}

// serviceRunner runs a plan's commands. On Linux, when the first command
// that must not fail does fail, systemctl is taken to have no user manager
// to talk to: that command and the rest are kept for the user to run (as
// `service install` has always done) instead of failing.
func serviceRunner(goos string) (service.Runner, *deferredSteps) {
	d := &deferredSteps{}
	fallback := goos != "darwin" && goos != "windows"
	return func(ctx context.Context, c service.Command) error {
		if d.why != "" {
			d.cmds = append(d.cmds, c)
			return nil
		}
		err := service.ExecRunner(ctx, c)
		var ce *service.CommandError
		switch {
		case err == nil:
			if !c.MayFail {
				fallback = false
			}
		case c.MayFail:
			d.failed = append(d.failed, c)
		case fallback && errors.As(err, &ce):
			d.why = ce.Output
			if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
				d.why = "no " + c.Args[0] + " program"
			}
			d.cmds = append(append(d.failed, c), d.cmds...)
			return nil
		}
		return err
	}, d
}

// print prints the commands that are left to do, and reports whether
// there were any.
func (d *deferredSteps) print(w io.Writer, purpose string) bool {
	if d.why == "" {
		return false
	}
	fmt.Fprintf(w, "\nsystemctl cannot reach your systemd user manager here (%s).\nRun these in a login session of this user to %s:\n", d.why, purpose)
	for _, c := range d.cmds {
		fmt.Fprintf(w, "    %s\n", c)
	}
	return true
}

// installMark is in every file that `service install` writes.
const installMark = "Written by `cardshare service install`"

// checkOurs refuses to remove a file at a service path that `service
// install` did not write (it carries installMark, in UTF-16 in a task
// file); a missing file is fine.
func checkOurs(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	u := utf16.Encode([]rune(installMark))
	wide := make([]byte, 0, 2*len(u))
	for _, c := range u {
		wide = append(wide, byte(c), byte(c>>8))
	}
	if bytes.Contains(b, []byte(installMark)) || bytes.Contains(b, wide) {
		return nil
	}
	return cmdutil.WithHint(fmt.Errorf("%s: not written by `cardshare service install`", path),
		"remove or rename it yourself if it is no longer wanted")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
