package sshpaths

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path"
	"runtime"
	"strings"
)

// Host is what the defaults depend on. Current fills it in for this
// process; tests build one for any OS.
type Host struct {
	// GOOS is the host OS, as runtime.GOOS.
	GOOS string
	// Home is the user's home directory: $HOME, or %USERPROFILE% on
	// Windows (where OpenSSH takes the profile directory).
	Home string
	// User is the login name (without DOMAIN\), which Pageant puts in its
	// pipe name.
	User string
	// Getenv reads an environment variable.
	Getenv func(string) string
	// Exists reports whether a file (or socket, or pipe) exists.
	Exists func(string) bool
	// LookPath finds a program on PATH, as exec.LookPath.
	LookPath func(string) (string, error)
	// LaunchdGetenv returns a variable of launchd's environment for the
	// user's session, as `launchctl getenv NAME` prints it (macOS); nil
	// means none.
	LaunchdGetenv func(string) string
	// Pipes lists the names of the named pipes under \\.\pipe\ (Windows);
	// nil means none are known.
	Pipes func() []string
}

// Current describes this process's host.
func Current() Host {
	h := Host{GOOS: runtime.GOOS, Getenv: os.Getenv, LookPath: exec.LookPath, Pipes: listPipes,
		Exists: func(p string) bool { _, err := os.Stat(p); return err == nil }}
	h.Home, _ = os.UserHomeDir()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
		if i := strings.LastIndexByte(h.User, '\\'); i >= 0 {
			h.User = h.User[i+1:] // DOMAIN\user on Windows
		}
		if h.GOOS != "windows" && u.HomeDir != "" {
			h.Home = u.HomeDir // OpenSSH takes it from the password database
		}
	}
	if h.GOOS == "darwin" {
		h.LaunchdGetenv = launchctlGetenv
	}
	return h
}

func launchctlGetenv(name string) string {
	out, err := exec.Command("/bin/launchctl", "getenv", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func (h Host) windows() bool { return h.GOOS == "windows" }

// join joins path elements with the host's separator, whatever OS runs
// the code.
func (h Host) join(elem ...string) string {
	if !h.windows() {
		return path.Join(elem...)
	}
	for i := range elem[:len(elem)-1] {
		elem[i] = strings.TrimRight(elem[i], `\/`)
	}
	return strings.Join(elem, `\`)
}

func (h Host) getenv(k string) string {
	if h.Getenv == nil {
		return ""
	}
	return h.Getenv(k)
}

func (h Host) exists(p string) bool { return h.Exists != nil && h.Exists(p) }

// UserDir is ~/.ssh (%USERPROFILE%\.ssh on Windows).
func (h Host) UserDir() string { return h.join(h.Home, ".ssh") }

// UserConfig is the user's ssh_config file.
func (h Host) UserConfig() string { return h.join(h.Home, ".ssh", "config") }

// UserKnownHosts are OpenSSH's default UserKnownHostsFile list
// (ssh_config(5): ~/.ssh/known_hosts ~/.ssh/known_hosts2); new keys go to
// the first.
func (h Host) UserKnownHosts() []string {
	return []string{h.join(h.Home, ".ssh", "known_hosts"), h.join(h.Home, ".ssh", "known_hosts2")}
}

// systemDir is /etc/ssh, or %ProgramData%\ssh on Windows.
func (h Host) systemDir() string {
	if h.windows() {
		pd := h.getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return h.join(pd, "ssh")
	}
	return "/etc/ssh"
}

// SystemConfig is the system-wide ssh_config.
func (h Host) SystemConfig() string { return h.join(h.systemDir(), "ssh_config") }

// SystemKnownHosts are OpenSSH's default GlobalKnownHostsFile list.
func (h Host) SystemKnownHosts() []string {
	return []string{h.join(h.systemDir(), "ssh_known_hosts"), h.join(h.systemDir(), "ssh_known_hosts2")}
}

// IdentityFiles are OpenSSH's default IdentityFile list, in its order
// (ssh_config(5), IdentityFile).
func (h Host) IdentityFiles() []string {
	var l []string
	for _, n := range []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk"} {
		l = append(l, h.join(h.Home, ".ssh", n))
	}
	return l
}

// ErrNoSSH means no ssh program was found.
var ErrNoSSH = errors.New("sshpaths: no ssh program")

// Program is an ssh program.
type Program struct {
	Path string
	// Native is false for an MSYS or Cygwin ssh on Windows (Git for
	// Windows ships one): ssh -G prints POSIX paths such as
	// /c/Users/me/.ssh/id_ed25519 and it cannot reach the agent's named
	// pipe, so its ssh -G output must not be used as it is.
	Native bool
}

// FindSSH finds the ssh program, preferring on Windows the OpenSSH that
// Windows 10 (1809) and later ship as an optional feature installed by
// default, %SystemRoot%\System32\OpenSSH\ssh.exe (Microsoft Learn, "Get
// started with OpenSSH for Windows"), over an MSYS ssh earlier on PATH.
// A 32-bit process sees System32 redirected to SysWOW64, which has no
// OpenSSH, so Sysnative is tried too.
func FindSSH(h Host) (Program, error) {
	p, err := "", errors.New("no LookPath")
	if h.LookPath != nil {
		p, err = h.LookPath("ssh")
	}
	if !h.windows() {
		if err != nil {
			return Program{}, ErrNoSSH
		}
		return Program{Path: p, Native: true}, nil
	}
	if err == nil && !isMSYS(p) {
		return Program{Path: p, Native: true}, nil
	}
	root := h.getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	for _, dir := range []string{"System32", "Sysnative"} {
		if c := h.join(root, dir, "OpenSSH", "ssh.exe"); h.exists(c) {
			return Program{Path: c, Native: true}, nil
		}
	}
	if err == nil {
		return Program{Path: p, Native: false}, nil
	}
	return Program{}, ErrNoSSH
}

// isMSYS reports whether an ssh.exe path is an MSYS2/Cygwin build: Git for
// Windows keeps it in ...\Git\usr\bin, MSYS2 in ...\msys64\usr\bin,
// Cygwin in ...\cygwin64\bin.
func isMSYS(p string) bool {
	l := strings.ToLower(strings.ReplaceAll(p, "/", `\`))
	return strings.Contains(l, `\usr\bin\`) || strings.Contains(l, `\cygwin`) || strings.Contains(l, `\msys`)
}

// programDataToken is how Windows' OpenSSH writes %ProgramData% in the
// paths it compiles in and prints: `ssh -G` shows
// "globalknownhostsfile __PROGRAMDATA__\ssh/ssh_known_hosts" (the token is
// replaced only when a file is opened; PowerShell/openssh-portable,
// contrib/win32/win32compat).
const programDataToken = "__PROGRAMDATA__"

// ExpandProgramData replaces a leading __PROGRAMDATA__ in a path that
// Windows' ssh -G printed with %ProgramData%; other paths are returned as
// they are.
func (h Host) ExpandProgramData(p string) string {
	rest, ok := strings.CutPrefix(p, programDataToken)
	if !ok {
		return p
	}
	pd := h.getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return strings.TrimRight(pd, `\/`) + rest
}
