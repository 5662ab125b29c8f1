package service

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Spec is what the service runs.
type Spec struct {
	// Binary is the absolute path of the cardshare program.
	Binary string
	// Args are its arguments; UpArgs gives the usual ones.
	Args []string
	// UID is the user's numeric ID: launchctl addresses the user's GUI
	// session as the domain gui/UID (macOS only).
	UID int
	// WindowsUser is the account the logon task belongs to, as DOMAIN\user
	// or a SID (os/user.Current's Username or Uid on Windows). It is both
	// the task's principal and the only user whose logon starts it.
	WindowsUser string
}

// Env is where the user's files go, as the OS names them. Only the fields
// of the target OS are needed.
type Env struct {
	Home          string // Linux, macOS: $HOME
	XDGConfigHome string // Linux: $XDG_CONFIG_HOME ("" = ~/.config)
	LocalAppData  string // Windows: %LOCALAPPDATA%
}

// Command is one command line of a plan.
type Command struct {
	Args []string
	// MayFail is set for steps that fail harmlessly, such as unloading a
	// service that is not loaded.
	MayFail bool
}

func (c Command) String() string { return strings.Join(c.Args, " ") }

// Plan is how to install, run and remove the service on one OS.
type Plan struct {
	// Path is the file to write and Content its bytes (mode 0644).
	Path    string
	Content []byte
	// Dirs must exist before the service starts (launchd does not create
	// the directory of its log file).
	Dirs []string
	// Install loads and starts the service once Path is written; Restart
	// makes a running service pick up a changed Path.
	Install, Restart []Command
	// Reload makes `up` reread its config file (SIGHUP, or a restart on
	// Windows, which has no signals).
	Reload []Command
	// Uninstall stops and unloads it; then Path is removed and
	// AfterRemove runs.
	Uninstall, AfterRemove []Command
	// Status shows what the service manager knows about it.
	Status Command
	// Logs says where the output goes, for the user.
	Logs string
}

// Names of the service for each manager.
const (
	SystemdUnit   = "cardshare.service"
	LaunchdLabel  = "com.github.cardshare.up"
	WindowsTask   = "cardshare"
	description   = "cardshare: the host's smart card readers in guest VMs"
	windowsLogDir = `cardshare`
)

// ErrUnsafe means a path or argument cannot be written into a service
// file safely.
var ErrUnsafe = errors.New("service: unsafe character")

// checkText rejects control characters (newline, CR, tab, NUL, DEL...):
// in a systemd unit a newline starts a new directive, and XML 1.0 cannot
// carry most of them at all.
func checkText(what, s string) error {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == 0xfffe || c == 0xffff {
			return fmt.Errorf("%w %q in %s %q", ErrUnsafe, c, what, s)
		}
	}
	return nil
}

// Validate checks the spec for goos.
func (s Spec) Validate(goos string) error {
	abs := path.IsAbs(s.Binary)
	if goos == "windows" {
		abs = isWindowsAbs(s.Binary)
	}
	if !abs {
		return fmt.Errorf("service: the program path %q is not absolute", s.Binary)
	}
	if err := checkText("program path", s.Binary); err != nil {
		return err
	}
	for _, a := range s.Args {
		if err := checkText("argument", a); err != nil {
			return err
		}
		// Task Scheduler expands %VARIABLE% in an action's arguments.
		if goos == "windows" && strings.Contains(a, "%") {
			return fmt.Errorf("%w '%%' in argument %q (Task Scheduler would expand it)", ErrUnsafe, a)
		}
	}
	switch goos {
	case "darwin":
		if s.UID <= 0 {
			return fmt.Errorf("service: no user ID for launchctl's gui/UID domain (got %d)", s.UID)
		}
	case "windows":
		if s.WindowsUser == "" {
			return errors.New("service: no Windows user for the logon task")
		}
		if err := checkText("user", s.WindowsUser); err != nil {
			return err
		}
		if strings.Contains(s.Binary, "%") {
			return fmt.Errorf("%w '%%' in program path %q (Task Scheduler would expand it)", ErrUnsafe, s.Binary)
		}
	}
	return nil
}

// isWindowsAbs reports whether p is C:\... or \\server\share\... .
func isWindowsAbs(p string) bool {
	if strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z') && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

// UpArgs are the arguments of the service's `cardshare up`. On Windows a
// task's standard output and error go nowhere, so up writes its log to
// logFile there (the caller passes LogFile(goos, env)); elsewhere the
// service manager keeps what up prints on standard error.
func UpArgs(goos, config, logFile string) []string {
	args := []string{"up", "--config", config}
	if goos == "windows" && logFile != "" {
		args = append(args, "--log-file", logFile)
	}
	return args
}

// LogFile is where the service's output goes: launchd's
// StandardErrorPath on macOS, up's --log-file on Windows, and "" on Linux
// (the journal).
func LogFile(goos string, env Env) string {
	switch goos {
	case "darwin":
		return path.Join(env.Home, "Library", "Logs", "cardshare", "up.log")
	case "windows":
		return winJoin(env.LocalAppData, windowsLogDir, "up.log")
	}
	return ""
}

func winJoin(elem ...string) string {
	for i := range elem[:len(elem)-1] {
		elem[i] = strings.TrimRight(elem[i], `\/`)
	}
	return strings.Join(elem, `\`)
}

// PlanFor returns the plan for goos ("linux" and the BSDs get systemd).
func PlanFor(goos string, s Spec, env Env) (Plan, error) {
	if err := s.Validate(goos); err != nil {
		return Plan{}, err
	}
	switch goos {
	case "darwin":
		return launchdPlan(s, env)
	case "windows":
		return taskPlan(s, env)
	}
	return systemdPlan(s, env)
}
