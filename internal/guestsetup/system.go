package guestsetup

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// The system part of guest setup (Options.System): the guest's pcscd
// masked and /run/pcscd/pcscd.comm a link to the forwarded socket, made by
// systemd-tmpfiles from a file cardshare owns, so that it survives reboots.

// pcscdUnits are the guest pcscd's systemd units, socket first.
var pcscdUnits = []string{"pcscd.socket", "pcscd.service"}

// systemScript does the system part as root (directly, or through sudo -n
// when the login user is not root). op=setup writes the tmpfiles.d file,
// stops and masks the guest's pcscd units and creates the link now;
// op=undo deletes the file and the link (if it still leads to target),
// unmasks the units that were not masked before setup and starts the ones
// that were active then.
const systemScript = `
fail() { printf '%s\n' "error=$*"; exit 0; }
S=
[ "$(id -u)" = 0 ] || S="$sudo -n"
case $op in
setup)
	$S mkdir -p "$(dirname "$tmpconf")" || fail "cannot create the directory of $tmpconf"
	printf '%s' "$conf" | $S tee "$tmpconf" >/dev/null || fail "cannot write $tmpconf"
	$S "$systemctl" stop pcscd.socket pcscd.service >/dev/null 2>&1
	$S "$systemctl" mask pcscd.socket pcscd.service >/dev/null || fail "cannot mask pcscd.socket and pcscd.service"
	$S "$tmpfiles" --create "$tmpconf" || fail "systemd-tmpfiles --create $tmpconf failed"
	;;
undo)
	$S rm -f "$tmpconf" || fail "cannot delete $tmpconf"
	if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then $S rm -f "$link" || fail "cannot delete $link"; fi
	if [ -n "$unmask" ]; then $S "$systemctl" unmask $unmask >/dev/null || fail "cannot unmask $unmask"; fi
	if [ -n "$start" ]; then $S "$systemctl" start $start || fail "cannot start $start"; fi
	;;
esac
printf '%s\n' "ok=1"
`

// systemPlan is what the system part will do.
type systemPlan struct {
	run     bool
	vars    []string // for systemScript
	changes []Change
}

// planSystem decides the system part, and refuses before any change when
// it cannot be done.
func planSystem(sv survey, socket string, undo bool, sys systemEnv) (*systemPlan, []string, error) {
	if sv.os != "Linux" || !sv.systemd {
		return nil, []string{fmt.Sprintf("--system skipped: %s does not run systemd; programs that ignore PCSCLITE_CSOCK_NAME need /run/pcscd/pcscd.comm linked to the socket by hand (and the guest's pcscd stopped)", guestName(sv.os))}, nil
	}
	gf, hadConf := sv.files[sys.tmpConf]
	ours := hadConf && bytes.HasPrefix(gf.content, []byte(headerTmp))
	if hadConf && !ours {
		return nil, nil, fmt.Errorf("%w: %s exists and was not written by cardshare; remove it by hand", ErrSetup, sys.tmpConf)
	}
	p := &systemPlan{}
	if undo {
		if !ours {
			p.changes = []Change{{Path: sys.tmpConf, Action: actionNothing}}
			return p, nil, nil
		}
		target := tmpfilesTarget(gf.content, sys.link)
		before := parseBefore(gf.content)
		var unmask, start []string
		for _, u := range pcscdUnits {
			b, ok := before[u]
			if !ok || !strings.HasPrefix(b.enabled, "masked") {
				unmask = append(unmask, u)
			}
			if ok && b.active == "active" {
				start = append(start, u)
			}
		}
		p.vars = []string{"op", "undo", "target", target, "unmask", strings.Join(unmask, " "), "start", strings.Join(start, " ")}
		p.changes = []Change{{Path: sys.tmpConf, Action: "deleted", Changed: true}}
		if target != "" && sv.link == target {
			p.changes = append(p.changes, Change{Path: sys.link, Action: "deleted the link", Changed: true})
		}
		if len(unmask) > 0 {
			p.changes = append(p.changes, Change{Path: strings.Join(unmask, ", "), Action: "unmasked", Changed: true})
		}
		if len(start) > 0 {
			p.changes = append(p.changes, Change{Path: strings.Join(start, ", "), Action: "started again", Changed: true})
		}
		p.run = true
		return p, nil, checkRoot(sv)
	}

	before := sv.units
	if ours {
		if b := parseBefore(gf.content); len(b) > 0 {
			before = b // setup ran before: what it found then is the state to restore
		}
	}
	conf := tmpfilesContent(socket, before, sys.link)
	masked := sv.unitsMasked()
	if ours && bytes.Equal(gf.content, conf) && masked && sv.link == socket {
		p.changes = []Change{
			{Path: sys.tmpConf, Action: actionUnchanged},
			{Path: sys.link, Action: "already leads to " + socket},
			{Path: strings.Join(pcscdUnits, ", "), Action: "already masked"},
		}
		return p, nil, nil
	}
	p.run = true
	p.vars = []string{"op", "setup", "conf", string(conf)}
	p.changes = []Change{
		{Path: sys.tmpConf, Action: "written", Changed: !bytes.Equal(gf.content, conf)},
		{Path: strings.Join(pcscdUnits, ", "), Action: "stopped and masked", Changed: !masked},
		{Path: sys.link, Action: "now leads to " + socket, Changed: sv.link != socket},
	}
	return p, nil, checkRoot(sv)
}

func (sv survey) unitsMasked() bool {
	for _, u := range pcscdUnits {
		if !strings.HasPrefix(sv.units[u].enabled, "masked") {
			return false
		}
	}
	return true
}

// checkRoot fails when the system part cannot get root.
func checkRoot(sv survey) error {
	switch sv.sudo {
	case "root", "ok":
	case "missing":
		return fmt.Errorf("%w: the login user is not root and sudo is not installed in the guest; nothing was changed", ErrSudo)
	case "refused":
		msg := sv.sudoErr
		if msg == "" {
			msg = "sudo -n refused"
		}
		return fmt.Errorf("%w: sudo in the guest cannot run without a password (%s); nothing was changed", ErrSudo, msg)
	default:
		return fmt.Errorf("%w: could not tell whether sudo works in the guest; nothing was changed", ErrSudo)
	}
	if len(sv.missing) > 0 {
		return fmt.Errorf("%w: the guest has no %s; nothing was changed", ErrSetup, strings.Join(sv.missing, " or "))
	}
	return nil
}

// tmpfilesContent is the tmpfiles.d(5) file: a directory for the link and
// the link itself; "L+" replaces whatever is at the path, such as the
// socket file a stopped pcscd.socket leaves behind. Boot recreates both,
// since /run is empty then. The first comment records the units' states
// before setup, for undo.
func tmpfilesContent(socket string, before map[string]unitState, link string) []byte {
	var b strings.Builder
	b.WriteString(headerTmp + ": the guest's pcscd is masked and\n")
	fmt.Fprintf(&b, "# %s leads to the socket that cardshare forwards from the host.\n", link)
	b.WriteString("# Undo with `cardshare guest setup --system --undo GUEST`.\n")
	b.WriteString(markBefore)
	for _, u := range pcscdUnits {
		st := before[u]
		if st.enabled == "" {
			st.enabled = "none"
		}
		if st.active == "" {
			st.active = "unknown"
		}
		fmt.Fprintf(&b, " %s=%s/%s", u, st.enabled, st.active)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "d %s 0755 root root -\n", filepath.Dir(link))
	fmt.Fprintf(&b, "L+ %s - - - - %s\n", link, socket)
	return []byte(b.String())
}

// parseBefore reads the units' states recorded by tmpfilesContent.
func parseBefore(content []byte) map[string]unitState {
	m := map[string]unitState{}
	for l := range strings.SplitSeq(string(content), "\n") {
		rest, ok := strings.CutPrefix(l, markBefore)
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			u, st, _ := strings.Cut(f, "=")
			e, a, _ := strings.Cut(st, "/")
			m[u] = unitState{enabled: e, active: a}
		}
	}
	return m
}

// tmpfilesTarget returns the link target of the L+ line for link.
func tmpfilesTarget(content []byte, link string) string {
	for l := range strings.SplitSeq(string(content), "\n") {
		f := strings.Fields(l)
		if len(f) == 7 && f[0] == "L+" && f[1] == link {
			return f[6]
		}
	}
	return ""
}

func applySystem(ctx context.Context, c *ssh.Client, p *systemPlan, sys systemEnv) error {
	vars := append([]string{"sudo", sys.sudo, "systemctl", sys.systemctl, "tmpfiles", sys.tmpfiles,
		"tmpconf", sys.tmpConf, "link", sys.link}, p.vars...)
	out, err := guestsock.Run(ctx, c, systemScript, vars...)
	if err != nil {
		return fmt.Errorf("system part: %w", err)
	}
	if err := scriptResult(out); err != nil {
		return fmt.Errorf("system part (it may be half done; run again, or undo with --system --undo): %w", err)
	}
	return nil
}
