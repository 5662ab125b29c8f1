package guestsetup

import (
	"bufio"
	"bytes"
	"context"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// Checks of a guest for `cardshare doctor`. Each runs over an existing SSH
// connection and reports what expose would meet, without forwarding.

// Env is what InspectEnv found about the login user's environment.
type Env struct {
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
func InspectEnv(ctx context.Context, c *ssh.Client) (Env, error) {
	sv, err := runSurvey(ctx, c, "", false, defaultSystemEnv)
	if err != nil {
		return Env{}, err
	}
	e := Env{Shell: sv.shell, Systemd: sv.systemd, OS: sv.os}
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
			return guestsock.Unquote(v)
		}
	}
	return ""
}
