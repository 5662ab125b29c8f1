package guestsetup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
)

// Guest environment setup: what makes the guest's programs find the socket
// that Expose forwards, written from the host over SSH with plain POSIX sh,
// so that the guest needs no cardshare binary.
//
// libpcsclite reads PCSCLITE_CSOCK_NAME once per process and otherwise dials
// /run/pcscd/pcscd.comm (pcsc-lite src/winscard_msg.c, getSocketName). Each
// mechanism below reaches a different set of processes:
//
//   - a marked block in ~/.profile (and in ~/.bash_profile, ~/.bash_login or
//     ~/.zprofile, which bash and zsh read instead of ~/.profile): login
//     shells, so interactive ssh sessions and `sh -l -c CMD`, but not
//     `ssh GUEST CMD`, which runs a non-login shell;
//   - ~/.config/environment.d/cardshare.conf (systemd guests only): the
//     systemd user manager, so user services and graphical sessions started
//     by it; environment.d(5) says it does not reach ssh logins;
//   - with System, a tmpfiles.d(5) symbolic link /run/pcscd/pcscd.comm to the
//     forwarded socket, with the guest's own pcscd masked: every program that
//     dials the default path, including ones that ignore the variable and
//     Flatpak sandboxes.

// ErrSudo means Options.System needs root in the guest and sudo
// cannot give it without a password (or is not installed). Nothing was
// changed in the guest.
var ErrSudo = errors.New("guest setup --system needs root in the guest")

// ErrSetup means a file that setup must change cannot be changed (not
// writable, not a regular file, edited concurrently, or with a broken
// cardshare block). Nothing was changed when it comes from the checks
// before the first write.
var ErrSetup = errors.New("guest setup")

// Options say what Setup does.
type Options struct {
	// Socket is the guest socket path to point programs at. Empty means
	// the default that Expose chooses for the same login user.
	Socket string
	// System also makes /run/pcscd/pcscd.comm lead to Socket and masks the
	// guest's pcscd.socket and pcscd.service. It needs root in the guest
	// (login as root, or sudo without a password) and applies to systemd
	// guests only.
	System bool
	// Undo removes what an earlier setup added, and nothing else. With
	// System it also undoes the system part.
	Undo bool

	// sys replaces the guest's system paths and commands in tests.
	sys *systemEnv
}

// Result says what Setup found and did.
type Result struct {
	// Socket is the guest socket path the environment points at ("" for
	// Undo).
	Socket string
	// OS is the guest's uname -s; Systemd is whether systemd runs it.
	OS      string
	Systemd bool
	// Shell is the login user's shell from the password database.
	Shell string
	// Changes lists each file or unit looked at, in order.
	Changes []Change
	// Notes say what did not apply to this guest, and why.
	Notes []string
}

// Change is what happened to one file or unit.
type Change struct {
	// Path is "~/.profile", "/etc/tmpfiles.d/cardshare.conf", a unit name...
	Path string
	// Action is a short past-tense description: "added the cardshare block",
	// "already set up", "deleted (cardshare had created it)".
	Action string
	// Changed is false when the guest already was as wanted.
	Changed bool
}

// Changed reports whether anything in the guest changed.
func (r Result) Changed() bool {
	for _, c := range r.Changes {
		if c.Changed {
			return true
		}
	}
	return false
}

// systemEnv is where the system part acts; tests point it at fakes.
type systemEnv struct {
	sdRoot    string // exists when systemd is the init system (sd_booted)
	tmpConf   string // the tmpfiles.d file cardshare owns
	link      string // the default pcscd socket path
	sudo      string
	systemctl string
	tmpfiles  string
}

var defaultSystemEnv = systemEnv{
	sdRoot:    "/run/systemd/system",
	tmpConf:   "/etc/tmpfiles.d/cardshare.conf",
	link:      "/run/pcscd/pcscd.comm",
	sudo:      "sudo",
	systemctl: "systemctl",
	tmpfiles:  "systemd-tmpfiles",
}

// Files in the login user's home directory that setup may change.
const (
	fileProfile     = ".profile"
	fileBashProfile = ".bash_profile"
	fileBashLogin   = ".bash_login"
	fileZProfile    = ".zprofile"
	fileEnvD        = ".config/environment.d/cardshare.conf"
)

// editScript changes one file in the home directory: it checks that the
// file still has the bytes the survey read (had, old), then writes new
// (op=write, creating the directories in mkdirs) or deletes the file and
// then the directories in rmdirs that are empty (op=remove). A regular file
// is replaced through a copy that keeps its mode; a symbolic link is written
// through, so that dotfiles managed elsewhere stay links.
const editScript = `
umask 022
fail() { printf '%s\n' "error=$*"; exit 0; }
cd "$HOME" || fail "cannot enter $HOME"
if [ "$had" = 1 ]; then
	[ -f "$f" ] || fail "$f disappeared while cardshare was editing it; run again"
	cur=$(cat -- "$f"; echo .)
	[ "$cur" = "$old." ] || fail "$f changed while cardshare was editing it; run again"
elif [ -e "$f" ] || [ -L "$f" ]; then
	fail "$f appeared while cardshare was editing it; run again"
fi
case $op in
write)
	if [ -n "$mkdirs" ]; then mkdir -p -- "$mkdirs" || fail "cannot create $mkdirs"; fi
	if [ "$had" = 1 ] && [ ! -L "$f" ]; then
		tmp=$f.cardshare-new
		rm -f -- "$tmp"
		if ! { cp -p -- "$f" "$tmp" && printf '%s' "$new" > "$tmp" && mv -f -- "$tmp" "$f"; }; then
			rm -f -- "$tmp"
			fail "cannot write $f"
		fi
	else
		printf '%s' "$new" > "$f" || fail "cannot write $f"
	fi ;;
remove)
	rm -f -- "$f" || fail "cannot delete $f"
	for d in $rmdirs; do rmdir -- "$d" 2>/dev/null; done ;;
esac
printf '%s\n' "ok=1"
`

// edit is a planned change of one file in the home directory.
type edit struct {
	file   string // relative to the home directory
	had    bool   // the file existed, with old as its bytes
	old    []byte
	remove bool   // delete the file instead of writing new
	new    []byte // the file's new bytes
	mkdirs string // directory to create first
	rmdirs string // directories to remove, if empty, after deleting
	action string
}

// Setup writes (or with Undo removes) the guest environment that makes
// the login user's programs find the guest socket. It looks at everything
// first and changes nothing when something would fail, so that no guest is
// left half set up: a file it cannot write, sudo that needs a password.
// What does not apply to the guest (environment.d without systemd, the
// system part on a guest without systemd) is skipped with a note.
func Setup(ctx context.Context, c *ssh.Client, opts Options) (Result, error) {
	sys := defaultSystemEnv
	if opts.sys != nil {
		sys = *opts.sys
	}
	if opts.Socket != "" && !opts.Undo {
		if err := guestsock.CheckPath(opts.Socket); err != nil {
			return Result{}, err
		}
	}
	sv, err := runSurvey(ctx, c, opts.Socket, opts.System, sys)
	if err != nil {
		return Result{}, err
	}
	res := Result{OS: sv.os, Systemd: sv.systemd, Shell: sv.shell}
	if !opts.Undo {
		res.Socket = sv.socket
		if err := guestsock.CheckPath(sv.socket); err != nil {
			return res, err
		}
		if err := checkPlainPath(sv.socket); err != nil {
			return res, err
		}
	}

	edits, notes, err := planUser(sv, res.Socket, opts.Undo)
	res.Notes = append(res.Notes, notes...)
	if err != nil {
		return res, err
	}
	var sysPlan *systemPlan
	if opts.System {
		sysPlan, notes, err = planSystem(sv, res.Socket, opts.Undo, sys)
		res.Notes = append(res.Notes, notes...)
		if err != nil {
			return res, err
		}
	}

	for _, e := range edits {
		changed := e.action != actionUnchanged && e.action != actionNothing
		if changed {
			if err := applyEdit(ctx, c, e); err != nil {
				return res, err
			}
		}
		res.Changes = append(res.Changes, Change{Path: "~/" + e.file, Action: e.action, Changed: changed})
	}
	if sv.systemd {
		// Only what cardshare's own environment.d file set is unset.
		sock := res.Socket
		if opts.Undo {
			if gf, ok := sv.files[fileEnvD]; ok && bytes.HasPrefix(gf.content, []byte(headerEnvD)) {
				sock = envDSocket(gf.content)
			}
		}
		if sock != "" {
			ch, note := applyUserManager(ctx, c, sock, opts.Undo, sys)
			if ch != nil {
				res.Changes = append(res.Changes, *ch)
			}
			if note != "" {
				res.Notes = append(res.Notes, note)
			}
		}
	}
	if sysPlan != nil {
		if sysPlan.run {
			if err := applySystem(ctx, c, sysPlan, sys); err != nil {
				return res, err
			}
		}
		res.Changes = append(res.Changes, sysPlan.changes...)
	}
	return res, nil
}

const (
	actionUnchanged = "already set up"
	actionNothing   = "nothing to remove"
)

// planUser decides what to do with each file in the home directory.
func planUser(sv survey, socket string, undo bool) ([]edit, []string, error) {
	var notes []string
	for _, o := range sv.odd {
		notes = append(notes, "left alone: "+o)
	}
	var edits []edit
	if undo {
		for _, f := range []string{fileProfile, fileBashProfile, fileBashLogin, fileZProfile} {
			gf, ok := sv.files[f]
			if !ok {
				continue
			}
			out, found, del, err := withoutBlock(gf.content)
			if err != nil {
				return nil, notes, fmt.Errorf("%w: ~/%s: %w", ErrSetup, f, err)
			}
			if !found {
				continue
			}
			e := edit{file: f, had: true, old: gf.content, new: out, action: "removed the cardshare block"}
			if del {
				e.remove, e.action = true, "deleted (cardshare had created it)"
			}
			edits = append(edits, e)
		}
		if gf, ok := sv.files[fileEnvD]; ok {
			if !bytes.HasPrefix(gf.content, []byte(headerEnvD)) {
				notes = append(notes, "left alone: ~/"+fileEnvD+" was not written by cardshare")
			} else {
				edits = append(edits, edit{file: fileEnvD, had: true, old: gf.content, remove: true,
					rmdirs: rmdirOrder(createdDirs(gf.content)), action: "deleted"})
			}
		}
		if len(edits) == 0 {
			edits = append(edits, edit{file: fileProfile, action: actionNothing})
		}
		return edits, notes, checkWritable(sv, edits)
	}

	// Login shells: sh, dash, ksh and bash without its own files read
	// ~/.profile; bash reads the first of ~/.bash_profile and ~/.bash_login
	// instead when one exists; zsh reads ~/.zprofile and never ~/.profile.
	files := []string{fileProfile}
	switch {
	case sv.has(fileBashProfile):
		files = append(files, fileBashProfile)
	case sv.has(fileBashLogin):
		files = append(files, fileBashLogin)
	}
	shell := path.Base(sv.shell)
	if sv.has(fileZProfile) || shell == "zsh" {
		files = append(files, fileZProfile)
	}
	switch shell {
	case "csh", "tcsh":
		notes = append(notes, fmt.Sprintf("the login shell %s does not read ~/.profile: add `setenv PCSCLITE_CSOCK_NAME %s` to ~/.login", shell, socket))
	case "fish":
		notes = append(notes, fmt.Sprintf("the login shell fish does not read ~/.profile: run `set -Ux PCSCLITE_CSOCK_NAME %s` once", socket))
	}
	for _, f := range files {
		gf, had := sv.files[f]
		out, changed, err := withBlock(gf.content, had, socket)
		if err != nil {
			return nil, notes, fmt.Errorf("%w: ~/%s: %w", ErrSetup, f, err)
		}
		e := edit{file: f, had: had, old: gf.content, new: out, action: actionUnchanged}
		switch {
		case !had:
			e.action = "created with the cardshare block"
		case changed && bytes.Contains(gf.content, []byte(blockBegin)):
			e.action = "updated the cardshare block"
		case changed:
			e.action = "added the cardshare block"
		}
		edits = append(edits, e)
	}

	if !sv.systemd {
		notes = append(notes, fmt.Sprintf("~/%s skipped: %s does not run systemd, so there is no user manager to read it; sessions get the variable from the shell profile only", fileEnvD, guestName(sv.os)))
	} else {
		gf, had := sv.files[fileEnvD]
		var created []string
		for _, d := range []string{".config", ".config/environment.d"} {
			if _, ok := sv.dirs[d]; !ok {
				created = append(created, d)
			}
		}
		if had {
			// Keep the record of the directories the first setup created.
			if prev := createdDirs(gf.content); len(prev) > 0 && bytes.HasPrefix(gf.content, []byte(headerEnvD)) {
				created = prev
			}
		}
		want := envDContent(socket, created)
		e := edit{file: fileEnvD, had: had, old: gf.content, new: want, action: actionUnchanged}
		if !had || !bytes.Equal(gf.content, want) {
			e.action = "written"
			if !had {
				e.mkdirs = ".config/environment.d"
			}
		}
		edits = append(edits, e)
	}
	return edits, notes, checkWritable(sv, edits)
}

func (sv survey) has(f string) bool {
	_, ok := sv.files[f]
	return ok
}

func guestName(osName string) string {
	if osName == "" {
		return "the guest"
	}
	return "the guest (" + osName + ")"
}

// checkWritable fails, before anything changes, when an edit cannot be made.
func checkWritable(sv survey, edits []edit) error {
	for _, e := range edits {
		if e.action == actionUnchanged || e.action == actionNothing {
			continue
		}
		for _, o := range sv.odd {
			if strings.HasSuffix(o, " "+e.file) {
				return fmt.Errorf("%w: ~/%s is %s; fix it by hand", ErrSetup, e.file, strings.TrimSuffix(o, " "+e.file))
			}
		}
		if e.had {
			// Replacing or deleting needs the directory as well as the file.
			if !sv.files[e.file].writable || !sv.dirWritable(path.Dir(e.file)) {
				return fmt.Errorf("%w: cannot change ~/%s: the login user may not write it or its directory", ErrSetup, e.file)
			}
			continue
		}
		if !sv.dirWritable(path.Dir(e.file)) {
			return fmt.Errorf("%w: cannot create ~/%s: no writable directory", ErrSetup, e.file)
		}
	}
	return nil
}

// dirWritable reports whether files can be made in dir (relative to the
// home directory), or in its nearest existing ancestor when it is missing.
func (sv survey) dirWritable(dir string) bool {
	for ; dir != "." && dir != "/"; dir = path.Dir(dir) {
		if w, ok := sv.dirs[dir]; ok {
			return w
		}
	}
	return sv.homeWritable
}

func applyEdit(ctx context.Context, c *ssh.Client, e edit) error {
	op := "write"
	if e.remove {
		op = "remove"
	}
	had := "0"
	if e.had {
		had = "1"
	}
	for _, b := range [][]byte{e.old, e.new} {
		if bytes.IndexByte(b, 0) >= 0 {
			return fmt.Errorf("%w: ~/%s contains a NUL byte; fix it by hand", ErrSetup, e.file)
		}
	}
	out, err := guestsock.Run(ctx, c, editScript, "f", e.file, "had", had, "old", string(e.old),
		"op", op, "new", string(e.new), "mkdirs", e.mkdirs, "rmdirs", e.rmdirs)
	if err != nil {
		return fmt.Errorf("edit ~/%s: %w", e.file, err)
	}
	return scriptResult(out)
}

// scriptResult turns an "error=" line into an error; it wants "ok=1".
func scriptResult(out []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "error":
			return fmt.Errorf("%w: %s", ErrSetup, v)
		case "ok":
			return nil
		}
	}
	return fmt.Errorf("%w: guest script did not finish (output %q)", ErrSetup, guestsock.Truncate(out, 200))
}
