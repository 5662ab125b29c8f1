package guestsetup

import (
	"bufio"
	"bytes"
	"context"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// The running systemd user manager read environment.d when it started; a
// manager kept alive by a login (cardshare's own, or lingering) would not
// see the new file until `systemctl --user daemon-reload` or a reboot, and
// the user services it starts meanwhile would miss the variable. So setup
// also sets the variable in the running manager (systemd.environment-
// generator(7), systemctl(1) set-environment), and undo unsets it there
// when it still has the value cardshare's file gave it.

// userManagerScript sets (op=set) or unsets (op=unset) PCSCLITE_CSOCK_NAME
// in the login user's running systemd user manager. It prints state=changed,
// unchanged, missing (no systemctl), unreachable (no user manager) or
// failed.
const userManagerScript = `
command -v "$systemctl" >/dev/null 2>&1 || { echo "state=missing"; exit 0; }
cur=$("$systemctl" --user show-environment 2>/dev/null) || { echo "state=unreachable"; exit 0; }
has=0
printf '%s\n' "$cur" | grep -qxF "PCSCLITE_CSOCK_NAME=$sock" && has=1
case $op in
set)
	[ $has = 1 ] && { echo "state=unchanged"; exit 0; }
	"$systemctl" --user set-environment "PCSCLITE_CSOCK_NAME=$sock" >/dev/null 2>&1 || { echo "state=failed"; exit 0; } ;;
unset)
	[ $has = 1 ] || { echo "state=unchanged"; exit 0; }
	"$systemctl" --user unset-environment PCSCLITE_CSOCK_NAME >/dev/null 2>&1 || { echo "state=failed"; exit 0; } ;;
esac
echo "state=changed"
`

// userManagerPath names the running manager in Result.Changes.
const userManagerPath = "systemd user manager"

// applyUserManager sets (or with undo unsets) the variable to socket in
// the running user manager and reports it as a Change, or as a note when
// there is no manager to tell. It never fails Setup: the files are
// written, and a manager that starts later reads them.
func applyUserManager(ctx context.Context, c *ssh.Client, socket string, undo bool, sys systemEnv) (*Change, string) {
	op := "set"
	if undo {
		op = "unset"
	}
	out, err := guestsock.Run(ctx, c, userManagerScript, "systemctl", sys.systemctl, "op", op, "sock", socket)
	state := "failed"
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "state="); ok {
				state = v
			}
		}
	}
	switch state {
	case "changed":
		action := "set PCSCLITE_CSOCK_NAME in the running manager (systemctl --user set-environment)"
		if undo {
			action = "unset PCSCLITE_CSOCK_NAME in the running manager (systemctl --user unset-environment)"
		}
		return &Change{Path: userManagerPath, Action: action, Changed: true}, ""
	case "unchanged":
		if undo {
			return &Change{Path: userManagerPath, Action: actionNothing}, ""
		}
		return &Change{Path: userManagerPath, Action: actionUnchanged}, ""
	case "unreachable", "missing":
		return nil, "no running systemd user manager to tell now; it reads ~/" + fileEnvD + " when it starts"
	}
	return nil, "could not change the running systemd user manager's environment: run `systemctl --user daemon-reload` in the guest, or log in again"
}

// envDSocket returns the socket path an environment.d file of cardshare's
// sets, or "".
func envDSocket(content []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PCSCLITE_CSOCK_NAME="); ok {
			return v
		}
	}
	return ""
}
