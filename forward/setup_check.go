package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Checks of a guest for `cardshare doctor`. Each runs over an existing SSH
// connection and reports what expose would meet, without forwarding.

// ProbeStreamLocal asks the guest's sshd for a Unix socket forward on a
// path in a new private directory under /tmp, closes it and removes the
// directory. It returns an error wrapping ErrForwardRefused when sshd
// refuses (AllowStreamLocalForwarding no, DisableForwarding yes, or a
// restriction on the key).
func ProbeStreamLocal(ctx context.Context, c *ssh.Client) error {
	out, err := runScript(ctx, c, `umask 077; d=$(mktemp -d /tmp/cardshare-doctor.XXXXXX) && echo "dir=$d"`)
	if err != nil {
		return fmt.Errorf("forward: make a directory in the guest: %w", err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "dir=")
	if !ok || !strings.HasPrefix(dir, "/tmp/cardshare-doctor.") || strings.ContainsAny(dir, "\n\x00") {
		return fmt.Errorf("forward: mktemp in the guest printed %q", truncate(out, 100))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		runScript(cctx, c, `rm -rf -- "$d"`, "d", dir)
	}()
	ln, err := c.ListenUnix(dir + "/probe.sock")
	if err != nil {
		return fmt.Errorf("forward: %w: listen on %s/probe.sock: %w", ErrForwardRefused, dir, err)
	}
	return ln.Close()
}

// SocketState says what is at the guest socket path now.
type SocketState string

const (
	SocketFree  SocketState = "free"   // nothing: expose will listen there
	SocketStale SocketState = "stale"  // a socket nobody serves: expose removes it
	SocketInUse SocketState = "in use" // a live listener, e.g. a running cardshare
	SocketOther SocketState = "other"  // not a socket: expose refuses to replace it
)

// GuestSocket is what InspectSocket found.
type GuestSocket struct {
	// Socket is the guest socket path expose would use.
	Socket string
	// State is what is at Socket now.
	State SocketState
	// OS is the guest's uname -s.
	OS string
	// Release is the guest's pcsc-lite release as its package manager
	// reports it, "" when none was found; Client is what it speaks.
	Release string
	Client  *pcsc.Client
}

// InspectSocket chooses and checks the guest socket path exactly as expose
// does before it forwards (creating the private directory when missing),
// and reads the guest's pcsc-lite release. A directory that other users
// can write to is an error wrapping ErrUnsafeDir. Nothing is removed.
func InspectSocket(ctx context.Context, c *ssh.Client, socket string, wait time.Duration) (GuestSocket, error) {
	info, err := prepare(ctx, c, socket)
	g := GuestSocket{Socket: info.Socket, OS: info.OS, Release: info.Release, State: SocketFree}
	if gc, ok := info.Client(); ok {
		g.Client = &gc
	}
	if err != nil {
		return g, fmt.Errorf("forward: %w", err)
	}
	switch info.Exists {
	case "other":
		g.State = SocketOther
	case "socket":
		g.State = SocketStale
		conn, err := c.Dial("unix", info.Socket)
		if err != nil {
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || oe.Reason != ssh.ConnectionFailed {
				return g, fmt.Errorf("forward: check whether %s is in use: %w", info.Socket, err)
			}
		} else {
			if answers(conn, wait) {
				g.State = SocketInUse
			}
			conn.Close()
		}
	}
	return g, nil
}

// GuestEnv is what InspectEnv found about the login user's environment.
type GuestEnv struct {
	// Shell is the login shell; Profile is the file it reads at login
	// among those setup writes ("" for shells that read none of them,
	// such as csh and fish).
	Shell, Profile string
	// ProfileSocket is the path the cardshare block in Profile sets, ""
	// when there is no block.
	ProfileSocket string
	// Systemd is whether the guest runs systemd; EnvDSocket is the path
	// ~/.config/environment.d/cardshare.conf sets, "" when it is missing.
	Systemd    bool
	EnvDSocket string
	// OS is the guest's uname -s.
	OS string
}

// InspectEnv reads, without changing anything, whether `cardshare guest
// setup` has pointed the login user's programs at a socket, and at which.
func InspectEnv(ctx context.Context, c *ssh.Client) (GuestEnv, error) {
	sv, err := runSurvey(ctx, c, "", false, defaultSystemEnv)
	if err != nil {
		return GuestEnv{}, fmt.Errorf("forward: %w", err)
	}
	e := GuestEnv{Shell: sv.shell, Systemd: sv.systemd, OS: sv.os}
	switch path.Base(sv.shell) {
	case "bash":
		e.Profile = fileProfile
		if sv.has(fileBashProfile) {
			e.Profile = fileBashProfile
		} else if sv.has(fileBashLogin) {
			e.Profile = fileBashLogin
		}
	case "zsh":
		e.Profile = fileZProfile
	case "csh", "tcsh", "fish":
	default: // sh, dash, ksh, mksh, ash, yash, and unknown Bourne shells
		e.Profile = fileProfile
	}
	if e.Profile != "" {
		e.ProfileSocket = blockSocket(sv.files[e.Profile].content)
	}
	if f, ok := sv.files[fileEnvD]; ok {
		sc := bufio.NewScanner(bytes.NewReader(f.content))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "PCSCLITE_CSOCK_NAME="); ok {
				e.EnvDSocket = v
			}
		}
	}
	return e, nil
}

// blockSocket returns the path that the cardshare block in a profile sets,
// or "" when there is no (intact) block.
func blockSocket(content []byte) string {
	start, end, found, err := findBlock(content)
	if err != nil || !found {
		return ""
	}
	for l := range strings.SplitSeq(string(content[start:end]), "\n") {
		if v, ok := strings.CutPrefix(l, "PCSCLITE_CSOCK_NAME="); ok {
			return shellUnquote(v)
		}
	}
	return ""
}

// shellUnquote undoes shellQuote.
func shellUnquote(s string) string {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return s
	}
	return strings.ReplaceAll(s[1:len(s)-1], `'\''`, `'`)
}
