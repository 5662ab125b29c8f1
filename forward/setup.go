package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/unixsock"
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

// ErrGuestSudo means SetupOptions.System needs root in the guest and sudo
// cannot give it without a password (or is not installed). Nothing was
// changed in the guest.
var ErrGuestSudo = errors.New("guest setup --system needs root in the guest")

// ErrGuestSetup means a file that setup must change cannot be changed (not
// writable, not a regular file, edited concurrently, or with a broken
// cardshare block). Nothing was changed when it comes from the checks
// before the first write.
var ErrGuestSetup = errors.New("guest setup")

// SetupOptions say what SetupGuest does.
type SetupOptions struct {
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

// SetupResult says what SetupGuest found and did.
type SetupResult struct {
	// Socket is the guest socket path the environment points at ("" for
	// Undo).
	Socket string
	// OS is the guest's uname -s; Systemd is whether systemd runs it.
	OS      string
	Systemd bool
	// Shell is the login user's shell from the password database.
	Shell string
	// Changes lists each file or unit looked at, in order.
	Changes []SetupChange
	// Notes say what did not apply to this guest, and why.
	Notes []string
}

// SetupChange is what happened to one file or unit.
type SetupChange struct {
	// Path is "~/.profile", "/etc/tmpfiles.d/cardshare.conf", a unit name...
	Path string
	// Action is a short past-tense description: "added the cardshare block",
	// "already set up", "deleted (cardshare had created it)".
	Action string
	// Changed is false when the guest already was as wanted.
	Changed bool
}

// Changed reports whether anything in the guest changed.
func (r SetupResult) Changed() bool {
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

// Marker lines of the profile block. Setup finds its block by these lines
// alone, so a user may edit around it.
const (
	blockBegin  = "# >>> cardshare >>>"
	blockEnd    = "# <<< cardshare <<<"
	markCreated = "# cardshare created this file; `cardshare guest setup --undo` deletes it."
	markNewline = "# cardshare added the line break before this block."
	headerEnvD  = "# Written by `cardshare guest setup`"
	headerTmp   = "# Written by `cardshare guest setup --system`"
	markBefore  = "# cardshare-before:"
	markCreDirs = "# cardshare created:"
)

// surveyScript reads, without changing anything, what setup needs to know
// about the guest: the default socket path (chosen exactly like
// prepareScript does), the OS and init system, the login shell, and the
// exact bytes of the files setup may change. Each file is reported as
// "file=W N PATH" followed by its N bytes and a newline.
const surveyScript = defaultDirFunc + `
umask 022
fail() { echo "error=$*"; exit 0; }
[ -n "${HOME:-}" ] && [ -d "$HOME" ] || fail "the login user has no home directory"
cd "$HOME" || fail "cannot enter $HOME"
echo "home=$HOME"
echo "os=$(uname -s)"
[ -d "$sdroot" ] && echo "systemd=1"
me=$(id -un)
sh=
if command -v getent >/dev/null 2>&1; then sh=$(getent passwd "$me" | cut -d: -f7); fi
[ -n "$sh" ] || sh=$(grep "^$me:" /etc/passwd 2>/dev/null | cut -d: -f7)
[ -n "$sh" ] || sh=${SHELL:-}
echo "shell=$sh"
[ -w . ] && echo "homewritable=1"
sock=$want
if [ -z "$sock" ]; then
	default_dir
	sock=$dir/pcscd.comm
fi
echo "socket=$sock"
for d in .config .config/environment.d; do
	if [ -d "$d" ]; then w=0; [ -w "$d" ] && w=1; echo "dir=$w $d"; fi
done
dump() {
	if [ -L "$1" ] && [ ! -e "$1" ]; then echo "odd=dangling symbolic link $1"; return 0; fi
	[ -e "$1" ] || return 0
	[ -f "$1" ] || { echo "odd=not a regular file $1"; return 0; }
	[ -r "$1" ] || { echo "odd=not readable $1"; return 0; }
	w=0; [ -w "$1" ] && w=1
	n=$(($(wc -c < "$1")))
	echo "file=$w $n $1"
	cat -- "$1"
	echo
}
for f in ` + fileProfile + ` ` + fileBashProfile + ` ` + fileBashLogin + ` ` + fileZProfile + ` ` + fileEnvD + `; do dump "$f"; done
if [ "$system" = 1 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "sudo=root"
	elif ! command -v "$sudo" >/dev/null 2>&1; then
		echo "sudo=missing"
	elif err=$("$sudo" -n true 2>&1 </dev/null); then
		echo "sudo=ok"
	else
		echo "sudo=refused"
		echo "sudoerr=$(echo "$err" | head -n 1)"
	fi
	for c in "$systemctl" "$tmpfiles"; do command -v "$c" >/dev/null 2>&1 || echo "nocmd=$c"; done
	if command -v "$systemctl" >/dev/null 2>&1; then
		for u in pcscd.socket pcscd.service; do
			e=$("$systemctl" is-enabled "$u" 2>/dev/null | head -n 1)
			a=$("$systemctl" is-active "$u" 2>/dev/null | head -n 1)
			echo "unit=$u ${e:-none} ${a:-unknown}"
		done
	fi
	if [ -L "$link" ]; then echo "link=$(readlink "$link")"; fi
	dump "$tmpconf"
fi
`

// editScript changes one file in the home directory: it checks that the
// file still has the bytes the survey read (had, old), then writes new
// (op=write, creating the directories in mkdirs) or deletes the file and
// then the directories in rmdirs that are empty (op=remove). A regular file
// is replaced through a copy that keeps its mode; a symbolic link is written
// through, so that dotfiles managed elsewhere stay links.
const editScript = `
umask 022
fail() { echo "error=$*"; exit 0; }
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
echo "ok=1"
`

// guestFile is one file as the survey read it.
type guestFile struct {
	writable bool
	content  []byte
}

// unitState is a systemd unit's state as systemctl reported it.
type unitState struct {
	enabled string // is-enabled: enabled, disabled, static, indirect, masked, none...
	active  string // is-active: active, inactive...
}

// survey is what surveyScript reported.
type survey struct {
	home, os, shell, socket string
	systemd, homeWritable   bool
	dirs                    map[string]bool // existing directory -> writable
	files                   map[string]guestFile
	odd                     []string // files setup cannot handle
	sudo, sudoErr           string
	missing                 []string // commands the system part needs
	units                   map[string]unitState
	link                    string // target of the link, "" if none
}

func runSurvey(ctx context.Context, c *ssh.Client, socket string, system bool, sys systemEnv) (survey, error) {
	sysFlag := "0"
	if system {
		sysFlag = "1"
	}
	out, err := runScript(ctx, c, surveyScript, "want", socket, "max", strconv.Itoa(maxSocketPath),
		"sdroot", sys.sdRoot, "system", sysFlag, "sudo", sys.sudo, "systemctl", sys.systemctl,
		"tmpfiles", sys.tmpfiles, "link", sys.link, "tmpconf", sys.tmpConf)
	if err != nil {
		return survey{}, err
	}
	return parseSurvey(out)
}

// parseSurvey reads surveyScript's output.
func parseSurvey(out []byte) (survey, error) {
	s := survey{dirs: map[string]bool{}, files: map[string]guestFile{}, units: map[string]unitState{}}
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			break
		}
		line = strings.TrimSuffix(line, "\n")
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "error":
			return s, fmt.Errorf("%w: %s", ErrGuestSetup, v)
		case "home":
			s.home = v
		case "os":
			s.os = v
		case "systemd":
			s.systemd = true
		case "shell":
			s.shell = v
		case "homewritable":
			s.homeWritable = true
		case "socket":
			s.socket = v
		case "dir":
			w, p, _ := strings.Cut(v, " ")
			s.dirs[p] = w == "1"
		case "odd":
			s.odd = append(s.odd, v)
		case "file":
			f := strings.SplitN(v, " ", 3)
			if len(f) != 3 {
				return s, fmt.Errorf("guest survey: bad line %q", line)
			}
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 0 || n > 1<<20 {
				return s, fmt.Errorf("guest survey: bad size in %q", line)
			}
			b := make([]byte, n+1)
			if _, err := io.ReadFull(r, b); err != nil || b[n] != '\n' {
				return s, fmt.Errorf("%w: %s changed while cardshare was reading it; run again", ErrGuestSetup, f[2])
			}
			s.files[f[2]] = guestFile{writable: f[0] == "1", content: b[:n]}
		case "sudo":
			s.sudo = v
		case "sudoerr":
			s.sudoErr = v
		case "nocmd":
			s.missing = append(s.missing, v)
		case "unit":
			f := strings.Fields(v)
			if len(f) == 3 {
				s.units[f[0]] = unitState{enabled: f[1], active: f[2]}
			}
		case "link":
			s.link = v
		}
		if err != nil {
			break
		}
	}
	if s.home == "" {
		return s, fmt.Errorf("guest survey printed no home directory (output %q)", truncate(out, 200))
	}
	return s, nil
}

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

// SetupGuest writes (or with Undo removes) the guest environment that makes
// the login user's programs find the guest socket. It looks at everything
// first and changes nothing when something would fail, so that no guest is
// left half set up: a file it cannot write, sudo that needs a password.
// What does not apply to the guest (environment.d without systemd, the
// system part on a guest without systemd) is skipped with a note.
func SetupGuest(ctx context.Context, c *ssh.Client, opts SetupOptions) (SetupResult, error) {
	res, err := setupGuest(ctx, c, opts)
	if err != nil {
		return res, fmt.Errorf("forward: %w", err)
	}
	return res, nil
}

func setupGuest(ctx context.Context, c *ssh.Client, opts SetupOptions) (SetupResult, error) {
	sys := defaultSystemEnv
	if opts.sys != nil {
		sys = *opts.sys
	}
	if opts.Socket != "" && !opts.Undo {
		if err := checkSocketPath(opts.Socket); err != nil {
			return SetupResult{}, err
		}
	}
	sv, err := runSurvey(ctx, c, opts.Socket, opts.System, sys)
	if err != nil {
		return SetupResult{}, err
	}
	res := SetupResult{OS: sv.os, Systemd: sv.systemd, Shell: sv.shell}
	if !opts.Undo {
		res.Socket = sv.socket
		if err := checkSocketPath(sv.socket); err != nil {
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
		res.Changes = append(res.Changes, SetupChange{Path: "~/" + e.file, Action: e.action, Changed: changed})
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
				return nil, notes, fmt.Errorf("%w: ~/%s: %w", ErrGuestSetup, f, err)
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
			return nil, notes, fmt.Errorf("%w: ~/%s: %w", ErrGuestSetup, f, err)
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
				return fmt.Errorf("%w: ~/%s is %s; fix it by hand", ErrGuestSetup, e.file, strings.TrimSuffix(o, " "+e.file))
			}
		}
		if e.had {
			// Replacing or deleting needs the directory as well as the file.
			if !sv.files[e.file].writable || !sv.dirWritable(path.Dir(e.file)) {
				return fmt.Errorf("%w: cannot change ~/%s: the login user may not write it or its directory", ErrGuestSetup, e.file)
			}
			continue
		}
		if !sv.dirWritable(path.Dir(e.file)) {
			return fmt.Errorf("%w: cannot create ~/%s: no writable directory", ErrGuestSetup, e.file)
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
			return fmt.Errorf("%w: ~/%s contains a NUL byte; fix it by hand", ErrGuestSetup, e.file)
		}
	}
	out, err := runScript(ctx, c, editScript, "f", e.file, "had", had, "old", string(e.old),
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
			return fmt.Errorf("%w: %s", ErrGuestSetup, v)
		case "ok":
			return nil
		}
	}
	return fmt.Errorf("%w: guest script did not finish (output %q)", ErrGuestSetup, truncate(out, 200))
}

// profileBlock is the block for the shell profile. The flags record what
// setup did beyond adding the block, so that undo can restore the file's
// exact bytes.
func profileBlock(socket string, created, newline bool) string {
	var b strings.Builder
	b.WriteString(blockBegin + "\n")
	b.WriteString("# Written by `cardshare guest setup`: PC/SC programs use the host's smart card\n")
	b.WriteString("# readers through the socket cardshare forwards. `cardshare guest setup --undo` removes it.\n")
	if created {
		b.WriteString(markCreated + "\n")
	}
	if newline {
		b.WriteString(markNewline + "\n")
	}
	fmt.Fprintf(&b, "PCSCLITE_CSOCK_NAME=%s\nexport PCSCLITE_CSOCK_NAME\n", shellQuote(socket))
	b.WriteString(blockEnd + "\n")
	return b.String()
}

// findBlock returns the byte range of the cardshare block in content,
// from the start of its first line to the end of its last line (with the
// line break, when there is one).
func findBlock(content []byte) (start, end int, found bool, err error) {
	start = -1
	for off := 0; off < len(content); {
		next := bytes.IndexByte(content[off:], '\n')
		lineEnd := len(content)
		if next >= 0 {
			lineEnd = off + next + 1
		}
		line := strings.TrimRight(string(content[off:lineEnd]), "\r\n")
		switch {
		case line == blockBegin && start < 0:
			start = off
		case line == blockBegin:
			return 0, 0, false, errors.New("the cardshare block is nested in another; fix it by hand")
		case line == blockEnd && start >= 0:
			return start, lineEnd, true, nil
		case line == blockEnd:
			return 0, 0, false, errors.New("the cardshare block's end line comes before its start line; fix it by hand")
		}
		off = lineEnd
	}
	if start >= 0 {
		return 0, 0, false, errors.New("the cardshare block has no end line (" + blockEnd + "); fix it by hand")
	}
	return 0, 0, false, nil
}

// withBlock returns content with the block for socket: an existing block
// is replaced in place, else the block is appended.
func withBlock(content []byte, existed bool, socket string) ([]byte, bool, error) {
	start, end, found, err := findBlock(content)
	if err != nil {
		return nil, false, err
	}
	if found {
		old := content[start:end]
		block := profileBlock(socket, hasLine(old, markCreated), hasLine(old, markNewline))
		out := append(append(append([]byte{}, content[:start]...), block...), content[end:]...)
		return out, !bytes.Equal(out, content), nil
	}
	newline := len(content) > 0 && content[len(content)-1] != '\n'
	out := append([]byte{}, content...)
	if newline {
		out = append(out, '\n')
	}
	out = append(out, profileBlock(socket, !existed, newline)...)
	return out, true, nil
}

// withoutBlock returns content without the block, and whether the file
// should be deleted because setup created it.
func withoutBlock(content []byte) (out []byte, found, del bool, err error) {
	start, end, found, err := findBlock(content)
	if err != nil || !found {
		return content, false, false, err
	}
	block := content[start:end]
	if hasLine(block, markNewline) && start > 0 && content[start-1] == '\n' {
		start--
	}
	out = append(append([]byte{}, content[:start]...), content[end:]...)
	return out, true, hasLine(block, markCreated) && len(out) == 0, nil
}

func hasLine(b []byte, line string) bool {
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.TrimRight(l, "\r") == line {
			return true
		}
	}
	return false
}

// envDContent is ~/.config/environment.d/cardshare.conf, which records
// the directories setup created so that undo removes them again.
func envDContent(socket string, created []string) []byte {
	var b strings.Builder
	b.WriteString(headerEnvD + " for systemd user services and graphical sessions;\n")
	b.WriteString("# `cardshare guest setup --undo` deletes it. See environment.d(5).\n")
	if len(created) > 0 {
		b.WriteString(markCreDirs + " " + strings.Join(created, " ") + "\n")
	}
	fmt.Fprintf(&b, "PCSCLITE_CSOCK_NAME=%s\n", socket)
	return []byte(b.String())
}

// createdDirs returns the directories an environment.d file says setup
// created, in the recorded order (parents first).
func createdDirs(content []byte) []string {
	for l := range strings.SplitSeq(string(content), "\n") {
		if rest, ok := strings.CutPrefix(l, markCreDirs); ok {
			var keep []string
			for _, d := range strings.Fields(rest) {
				// Only the two directories setup can create.
				if d == ".config" || d == ".config/environment.d" {
					keep = append(keep, d)
				}
			}
			return keep
		}
	}
	return nil
}

// rmdirOrder is dirs deepest first, for rmdir.
func rmdirOrder(dirs []string) string {
	r := slices.Clone(dirs)
	slices.Reverse(r)
	return strings.Join(r, " ")
}

// checkPlainPath refuses socket paths that environment.d and tmpfiles.d
// would need quoting for; the profile block quotes for sh and takes any.
func checkPlainPath(p string) error {
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("/._-+@:,=~", r):
		default:
			return fmt.Errorf("%w: guest socket %q contains %q; choose a path of letters, digits and /._-+@:,=~", ErrGuestSetup, p, r)
		}
	}
	return nil
}

// DefaultGuestSocket returns the guest socket path that Expose chooses
// when none is given, as the guest's shell computes it (default_dir), for
// `cardshare guest env`. Relay mode's agent uses the same function.
func DefaultGuestSocket(getenv func(string) string, uid int) string {
	return unixsock.GuestSocketFor(getenv, uid)
}

// ExportLine is the sh line that points programs at socket.
func ExportLine(socket string) string {
	return "export PCSCLITE_CSOCK_NAME=" + shellQuoteIfNeeded(socket)
}

func shellQuoteIfNeeded(s string) string {
	if s != "" && checkPlainPath(s) == nil && !strings.HasPrefix(s, "~") {
		return s
	}
	return shellQuote(s)
}
