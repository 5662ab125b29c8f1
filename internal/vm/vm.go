package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/sshdial"
)

// ErrAmbiguous means that more than one VM manager knows the name.
var ErrAmbiguous = errors.New("vm: name is ambiguous")

// ErrNoAddress means a VM manager knows the name but cannot say how to
// reach the VM's SSH server (not running, no port forward, no IP address).
var ErrNoAddress = errors.New("vm: no SSH address for the VM")

// Runner runs the program name with args in dir ("" = the current
// directory) and returns its standard output. When the program is not
// installed, the error wraps exec.ErrNotFound; when it runs and fails, the
// error is a *RunError.
type Runner func(ctx context.Context, dir, name string, args ...string) ([]byte, error)

// RunError is a command that ran and failed.
type RunError struct {
	Cmd    string // the command line, for messages
	Stderr string // its standard error, trimmed
	Err    error
}

func (e *RunError) Error() string {
	if e.Stderr != "" {
		return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, firstLine(e.Stderr))
	}
	return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

// commandTimeout bounds each manager's command: a hung VBoxSVC or libvirtd
// must not hang expose.
const commandTimeout = 20 * time.Second

// ExecRunner runs commands with os/exec.
func ExecRunner(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	p, err := lookTool(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &RunError{Cmd: name + " " + strings.Join(args, " "), Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return out, nil
}

// Source says where a destination came from.
type Source struct {
	// Kind is "destination" (user@host:port as typed), "ssh_config",
	// "virtualbox", "libvirt", "vagrant", "lima", "vmware", "parallels",
	// "utm", "hyperv" or "host name".
	Kind string
	// Detail says what the manager reported, e.g. the NAT rule.
	Detail string
	// Dest and ConfigFile are what sshdial.Resolve was given. ConfigFile
	// "" means ssh's default config; a Vagrant config lived in a temporary
	// file that is gone.
	Dest, ConfigFile string
	// Looked lists the installed managers that were asked and had no
	// usable answer, with why: "libvirt: no domain named x".
	Looked []string
}

// Candidate is a manager's answer: a destination for sshdial.Resolve.
type Candidate struct {
	Manager string
	// Dest is [user@]host[:port] or an ssh_config Host alias.
	Dest string
	// Config is ssh_config text to resolve Dest with (Vagrant);
	// ConfigFile an existing ssh_config file (Lima). Both empty means the
	// user's ssh_config.
	Config     []byte
	ConfigFile string
	Detail     string
}

func (c Candidate) String() string {
	s := c.Manager + " (" + c.Dest
	if c.ConfigFile != "" {
		s += " via " + c.ConfigFile
	}
	return s + ")"
}

// Resolver resolves names. The zero value uses ssh's default config, runs
// the real tools, looks for a Vagrantfile in the current directory and
// for Lima in $LIMA_HOME or ~/.lima.
type Resolver struct {
	// SSHConfig is the ssh_config file for ssh -F; "" means ssh's default.
	SSHConfig string
	// Run runs the managers' tools and ssh -G; nil means ExecRunner.
	Run Runner
	// VagrantDir is the directory with the Vagrantfile; "" means the
	// current directory ($VAGRANT_CWD when set, as vagrant itself does).
	VagrantDir string
	// LimaHome is Lima's directory; "" means $LIMA_HOME, else ~/.lima.
	LimaHome string
}

// Resolve resolves name with the default Resolver and the given ssh_config.
func Resolve(ctx context.Context, name, sshConfig string) (sshdial.Target, Source, error) {
	r := &Resolver{SSHConfig: sshConfig}
	return r.Resolve(ctx, name)
}

// manager looks a name up in one VM manager. It returns nil, nil when the
// manager does not know the name (or is not installed), and an error
// wrapping ErrNoAddress when it knows the name but cannot say where its
// SSH server is. why says what it looked at, for Source.Looked.
type manager struct {
	name string
	find func(ctx context.Context, r *Resolver, name string) (c *Candidate, why string, err error)
}

var managers = []manager{
	{"virtualbox", findVirtualBox},
	{"libvirt", findLibvirt},
	{"vagrant", findVagrant},
	{"lima", findLima},
	{"vmware", findVMware},
	{"parallels", findParallels},
	{"utm", findUTM},
	{"hyperv", findHyperV},
}

// Resolve turns name ([user@]NAME, or a destination with a port) into a
// Target, trying in order: an explicit host:port, an ssh_config alias, the
// installed VM managers, and finally a plain host name.
func (r *Resolver) Resolve(ctx context.Context, name string) (sshdial.Target, Source, error) {
	if err := sshdial.CheckConfigFile(r.SSHConfig); err != nil {
		return sshdial.Target{}, Source{}, err
	}
	user, host := "", name
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		user, host = name[:i], name[i+1:]
	}
	if strings.HasPrefix(name, "ssh://") || strings.Contains(host, ":") || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return r.forward(ctx, name, Source{Kind: "destination", Dest: name, ConfigFile: r.SSHConfig})
	}
	if host == "" || user == "" && strings.Contains(name, "@") {
		return sshdial.Target{}, Source{}, fmt.Errorf("vm: bad name %q", name)
	}

	if ok, err := r.isSSHAlias(ctx, host); err != nil {
		return sshdial.Target{}, Source{}, err
	} else if ok {
		return r.forward(ctx, name, Source{Kind: "ssh_config", Dest: name, ConfigFile: r.SSHConfig,
			Detail: fmt.Sprintf("a Host or Match block in %s applies to %s", r.configName(), host)})
	}

	var (
		found  []*Candidate
		looked []string
		errs   []error
	)
	for _, m := range managers {
		c, why, err := m.find(ctx, r, host)
		switch {
		case err != nil:
			errs = append(errs, err)
			looked = append(looked, m.name+": "+err.Error())
		case c != nil:
			c.Manager = m.name
			found = append(found, c)
		case why != "":
			looked = append(looked, m.name+": "+why)
		}
	}
	switch len(found) {
	case 0:
		if len(errs) > 0 {
			return sshdial.Target{}, Source{Looked: looked}, errors.Join(errs...)
		}
		src := Source{Kind: "host name", Dest: name, ConfigFile: r.SSHConfig, Looked: looked,
			Detail: "not an ssh_config alias, and no installed VM manager knows it"}
		return r.forward(ctx, name, src)
	case 1:
	default:
		var names []string
		for _, c := range found {
			names = append(names, c.String())
		}
		return sshdial.Target{}, Source{Looked: looked}, fmt.Errorf("%w: %q names %d VMs: %s", ErrAmbiguous, host, len(found), strings.Join(names, ", "))
	}
	c := found[0]
	dest := c.Dest
	if user != "" && c.Config == nil && c.ConfigFile == "" {
		dest = user + "@" + dest
	}
	src := Source{Kind: c.Manager, Detail: c.Detail, Dest: dest, ConfigFile: r.SSHConfig, Looked: looked}
	if c.ConfigFile != "" {
		src.ConfigFile = c.ConfigFile
	}
	if c.Config != nil {
		f, err := os.CreateTemp("", "cardshare-ssh-config-*")
		if err != nil {
			return sshdial.Target{}, src, fmt.Errorf("vm: %w", err)
		}
		defer os.Remove(f.Name())
		_, err = f.Write(c.Config)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return sshdial.Target{}, src, fmt.Errorf("vm: %w", err)
		}
		src.ConfigFile = f.Name()
		t, _, err := r.forward(ctx, dest, src)
		src.ConfigFile = ""
		if err == nil && user != "" {
			t.User = user
		}
		t.Alias = name
		return t, src, err
	}
	t, src, err := r.forward(ctx, dest, src)
	t.Alias = name
	return t, src, err
}

func (r *Resolver) forward(ctx context.Context, dest string, src Source) (sshdial.Target, Source, error) {
	t, err := sshdial.Resolve(ctx, dest, src.ConfigFile)
	if err != nil {
		return sshdial.Target{}, src, err
	}
	return t, src, nil
}

func (r *Resolver) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	if r.Run != nil {
		return r.Run(ctx, dir, name, args...)
	}
	return ExecRunner(ctx, dir, name, args...)
}

func (r *Resolver) configName() string {
	if r.SSHConfig != "" {
		return r.SSHConfig
	}
	return "ssh_config"
}

// isSSHAlias reports whether ssh_config treats host differently from any
// other name: ssh -G prints the same for it as for a random name no Host
// pattern can mean, unless a block applies to it (any option counts, not
// only HostName). ControlPath is left out: its %C hash differs per name.
func (r *Resolver) isSSHAlias(ctx context.Context, host string) (bool, error) {
	if !plainName(host) {
		return false, nil
	}
	args := func(h string) []string {
		a := []string{"-G"}
		if r.SSHConfig != "" {
			a = append(a, "-F", r.SSHConfig)
		}
		return append(a, "--", h)
	}
	got, err := r.run(ctx, "", "ssh", args(host)...)
	if errors.Is(err, exec.ErrNotFound) { // no ssh (Windows without OpenSSH, Wine): the files sshdial reads decide
		return sshdial.IsConfigAlias(host, r.SSHConfig)
	}
	if err != nil {
		return false, fmt.Errorf("vm: ssh -G %s: %w", host, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	sentinel := "cardshare-probe-" + hex.EncodeToString(b) + ".invalid"
	base, err := r.run(ctx, "", "ssh", args(sentinel)...)
	if err != nil {
		return false, fmt.Errorf("vm: ssh -G: %w", err)
	}
	norm := func(out []byte, name string) string {
		var keep []string
		for l := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(l, "controlpath ") {
				continue
			}
			keep = append(keep, strings.ToLower(strings.ReplaceAll(l, name, host)))
		}
		return strings.Join(keep, "\n")
	}
	return norm(got, host) != norm(base, sentinel), nil
}

// plainName reports whether s can be a host name or ssh_config alias.
func plainName(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-", c)) {
			return false
		}
	}
	return true
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// notInstalled reports whether err says the tool is missing.
func notInstalled(err error) bool { return errors.Is(err, exec.ErrNotFound) }

// stderrOf returns the trimmed standard error of a failed command.
func stderrOf(err error) string {
	var re *RunError
	if errors.As(err, &re) {
		return re.Stderr
	}
	return err.Error()
}

func homeDir() string {
	h, _ := os.UserHomeDir()
	return h
}

func tildePath(p string) string {
	if h := homeDir(); h != "" {
		if rel, err := filepath.Rel(h, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
	}
	return p
}

// managerTitles: the managers' names as users write them; managerOS: the OS of those bound to one.
var managerTitles = map[string]string{"virtualbox": "VirtualBox", "libvirt": "libvirt", "vagrant": "Vagrant", "lima": "Lima", "vmware": "VMware", "parallels": "Parallels", "utm": "UTM", "hyperv": "Hyper-V"}
var managerOS = map[string]string{"parallels": "darwin", "utm": "darwin", "hyperv": "windows"}

// Unknown reports whether no ssh_config block and no VM manager knew the
// name: it was taken as a plain host name.
func (s Source) Unknown() bool { return s.Kind == "host name" }

// WhereLooked says, for a name that Resolve took as a plain host name, where
// it looked first, with sshConfig the ssh_config file name to show ("" for
// ~/.ssh/config): `myvmm is not a Host in ~/.ssh/config, nor a VM that
// libvirt knows (no domain named myvmm); VirtualBox, Vagrant and Lima are
// not installed`.
func (s Source) WhereLooked(name, sshConfig string) string {
	if sshConfig == "" {
		sshConfig = "~/.ssh/config"
	}
	var asked, whys, missing []string
	seen := map[string]bool{}
	for _, l := range s.Looked {
		m, why, _ := strings.Cut(l, ": ")
		seen[m] = true
		asked = append(asked, managerTitles[m])
		whys = append(whys, why)
	}
	for _, m := range managers {
		if !seen[m.name] && (managerOS[m.name] == "" || managerOS[m.name] == hostOS) {
			missing = append(missing, managerTitles[m.name])
		}
	}
	b := fmt.Sprintf("%s is not a Host in %s", name, sshConfig)
	if len(asked) > 0 {
		verb := " knows"
		if len(asked) > 1 {
			verb = " know"
		}
		b += fmt.Sprintf(", nor a VM that %s%s (%s)", orList(asked), verb, strings.Join(whys, "; "))
	}
	switch {
	case len(missing) == 0:
	case len(asked) == 0:
		b += ", nor a VM: " + andList(missing) + " are not installed (or have no VMs here)"
	case len(missing) == 1:
		b += "; " + missing[0] + " is not installed (or has no VMs here)"
	default:
		b += "; " + andList(missing) + " are not installed (or have no VMs here)"
	}
	return b
}

func orList(s []string) string  { return joinLast(s, " or ") }
func andList(s []string) string { return joinLast(s, " and ") }

func joinLast(s []string, last string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + last + s[len(s)-1]
}
