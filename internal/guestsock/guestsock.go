package guestsock

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// ErrSilent means a listener holds the guest socket path and accepts
// connections but does not answer a CMD_VERSION: the forward of an SSH
// connection that died without the guest's sshd noticing yet, or some
// other program that is slow or stuck. It is never removed; the forward
// retries until the listener is gone (sshd's ClientAliveInterval reaps a
// dead connection) or answers.
var ErrSilent = errors.New("guest socket is held by a listener that does not answer")

// ErrRemoved means the guest socket disappeared while the forward was
// up; the forward reconnects to create it again.
var ErrRemoved = errors.New("guest socket was removed")

// ErrUnsafeDir means the directory of the guest socket lets other guest
// users create files in it, so one of them could create the socket path
// first and receive the card traffic, PINs included.
var ErrUnsafeDir = errors.New("guest socket directory is writable by other users")

// Info is what Prepare found in the guest.
type Info struct {
	Socket  string // the guest socket path to listen on
	Exists  string // "socket", "other" or "" for the path's current state
	OS      string // uname -s
	Release string // the guest's pcsc-lite release, "" if unknown
}

// Client is the guest's libpcsclite, if its release could be read.
func (g Info) Client() (pcsc.Client, bool) {
	return pcsc.ClientOfRelease(g.Release)
}

// pathScript is run by /bin/sh in the guest. It is plain POSIX sh with
// no GNU-only flags: guests are any Unix with pcsc-lite. The host passes
// values by prepending variable assignments, quoted for sh.
//
// It chooses the socket path (the requested one, or a directory only the
// login user can enter: $XDG_RUNTIME_DIR/cardshare, else ~/.cardshare, else
// /tmp/cardshare-UID when those paths are too long for sun_path), creates
// the directory 0700, refuses a directory that other users can write to or
// that sits in one they can write to (unless it is sticky, like /tmp),
// and reports the path and whether something is already there.
//
// It runs before every guest socket appears, a hundred at once when
// `cardshare up` starts, and a fork and exec costs about 10 ms of CPU on a
// small VM: so it finds parent directories with parameter expansion (not
// dirname) and checks the socket's directory and all those above it with
// one find (not ls and awk for each, which made it 25 programs a run).
// find is its only program on the way, unless it must create or chmod the
// directory.
const pathScript = DefaultDirFunc + `
umask 077
fail() { printf '%s\n' "error=$*"; exit 0; }
me=${LOGNAME:-${USER:-}} # sshd sets both to the login name
[ -n "$me" ] || me=$(id -u)
parent() { # sets p to the directory of $1, as dirname does
	p=$1
	while [ "${p%/}" != "$p" ] && [ "$p" != / ]; do p=${p%/}; done
	case $p in
	*/*) p=${p%/*} ;;
	*) p=.; return ;;
	esac
	while [ "${p%/}" != "$p" ]; do p=${p%/}; done
	[ -n "$p" ] || p=/
}
# check looks at $dir and every directory above it with one find, which
# names them (as $dir/. and the others) in order, nearest first, and runs
# printf only for one that fails: $dir must be ours (or root's, for a
# path the user chose, which others may not write to either), and the
# directories above it ours or root's, and not writable by others unless
# sticky: else another user could rename the socket's directory away and
# put their own in its place. It fails when find cannot tell.
check() {
	a=$dir
	set -- "$dir/."
	while [ "$a" != / ] && [ "$a" != . ]; do
		parent "$a"
		a=$p
		set -- "$@" "$a"
	done
	if [ -z "$want" ]; then
		out=$(find "$@" -prune \( -path '*/.' ! -user "$me" -exec printf 'notmine=%s\n' {} \; \) -o \
			\( ! -path '*/.' \( \( ! -user "$me" ! -user 0 \) -o \( \( -perm -020 -o -perm -002 \) ! -perm -1000 \) \) -exec printf 'unsafe=%s\n' {} \; \) 2>/dev/null)
	else
		out=$(find "$@" -prune \( -path '*/.' ! -user "$me" ! -user 0 -exec printf 'owner=%s\n' {} \; \) -o \
			\( -path '*/.' \( -perm -020 -o -perm -002 \) -exec printf 'open=%s\n' {} \; \) -o \
			\( ! -path '*/.' \( \( ! -user "$me" ! -user 0 \) -o \( \( -perm -020 -o -perm -002 \) ! -perm -1000 \) \) -exec printf 'unsafe=%s\n' {} \; \) 2>/dev/null)
	fi
}
# owner_ok and ancestors_ok do check's job one directory and one ls at a
# time, where find cannot.
owner_ok() { # $1 is owned by us or root, and no one else may write to it;
	# sets m to its mode string and o to its owner
	m= o=
	l=$(ls -ldn "$1" 2>/dev/null)
	[ -n "$l" ] || return 1
	set -f
	set -- $l
	set +f
	m=$1 o=$3
	[ "$o" = "$uid" ] || [ "$o" = 0 ] || return 1
	case "$m" in ?????w????*|????????w?*) return 2 ;; esac
	return 0
}
ancestors_ok() {
	a=$1
	while [ "$a" != / ] && [ "$a" != . ]; do
		parent "$a"
		a=$p
		owner_ok "$a"
		case $? in
		1) printf '%s\n' "unsafe=$a"; return ;;
		2) case "$m" in ?????????[tT]*) ;; *) printf '%s\n' "unsafe=$a"; return ;; esac ;;
		esac
	done
}
if [ -z "$want" ]; then
	default_dir
	[ -d "$dir" ] || mkdir "$dir" || fail "cannot create $dir"
	[ -L "$dir" ] && fail "$dir is a symbolic link"
else
	sock=$want
	parent "$sock"
	dir=$p
	[ -d "$dir" ] || mkdir -p "$dir" || fail "cannot create $dir"
	[ -L "$dir" ] && printf '%s\n' "unsafe=$dir"
fi
if check; then
	while IFS= read -r line; do
		case $line in
		notmine=*) fail "$dir is not owned by $me" ;;
		owner=*) fail "$dir is owned by another user" ;;
		open=*) printf '%s\n' "unsafe=$dir" ;;
		unsafe=*) printf '%s\n' "$line"; break ;;
		esac
	done <<EOF
$out
EOF
else
	uid=$(id -u)
	owner_ok "$dir"
	case $? in
	1) fail "$dir is owned by another user" ;;
	2) [ -n "$want" ] && printf '%s\n' "unsafe=$dir" ;;
	esac
	[ -n "$want" ] || [ "$o" = "$uid" ] || fail "$dir is not owned by $(id -un)"
	ancestors_ok "$dir"
fi
if [ -z "$want" ]; then
	chmod 700 "$dir" || fail "cannot chmod $dir"
	sock=$dir/pcscd.comm
fi
printf '%s\n' "socket=$sock"
if [ -S "$sock" ]; then printf '%s\n' "exists=socket"; elif [ -e "$sock" ] || [ -L "$sock" ]; then printf '%s\n' "exists=other"; fi
`

// probeScript reports the guest's OS and its pcsc-lite release, as the
// package manager knows it. The package managers are slow to start
// (dpkg-query reads its whole database), so forward runs it through the
// keeper session once the guest socket is there (Keeper.Probe), not
// before; Prepare runs it after pathScript. Standard input is the script itself when the keeper runs it:
// no command may read it.
const probeScript = `printf '%s\n' "os=$(uname -s)"
rel=
if command -v dpkg-query >/dev/null 2>&1; then rel=$(dpkg-query -W -f '${Version}' libpcsclite1 2>/dev/null </dev/null); fi
if [ -z "$rel" ] && command -v rpm >/dev/null 2>&1; then rel=$(rpm -q --qf '%{VERSION}' pcsc-lite-libs 2>/dev/null </dev/null) || rel=; fi
if [ -z "$rel" ] && command -v apk >/dev/null 2>&1; then rel=$(apk list -I pcsc-lite-libs 2>/dev/null </dev/null | sed -n 's/^pcsc-lite-libs-\([0-9][0-9.]*\).*/\1/p'); fi
if [ -z "$rel" ] && command -v pkg >/dev/null 2>&1; then rel=$(pkg query %v pcsc-lite 2>/dev/null </dev/null) || rel=; fi
if [ -z "$rel" ] && command -v pkg_info >/dev/null 2>&1; then rel=$(pkg_info -E pcsc-lite 2>/dev/null </dev/null | sed 's/^pcsc-lite-//'); fi
if [ -z "$rel" ] && command -v pkg-config >/dev/null 2>&1; then rel=$(pkg-config --modversion libpcsclite 2>/dev/null </dev/null); fi
printf '%s\n' "release=$rel"
`

// prepareScript is pathScript, then probeScript: what Prepare runs.
const prepareScript = pathScript + probeScript

// checkScript reports whether the guest socket is gone.
const checkScript = `[ -S "$sock" ] || printf '%s\n' missing
`

// Missing reports whether no socket is at sock in the guest any more.
func Missing(ctx context.Context, c *ssh.Client, sock string) (bool, error) {
	out, err := Run(ctx, c, checkScript, "sock", sock)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(out)) == "missing", nil
}

// DefaultDirFunc defines default_dir, which sets dir to the default guest
// socket directory; Prepare and package guestsetup's survey share it, and
// unixsock.GuestSocketFor mirrors it in Go. It needs $maxdir (unixsock.MaxDir).
const DefaultDirFunc = `default_dir() {
	dir=
	if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -d "$XDG_RUNTIME_DIR" ]; then
		dir=$XDG_RUNTIME_DIR/cardshare
	elif [ -n "${HOME:-}" ] && [ -d "$HOME" ]; then
		dir=$HOME/.cardshare
	fi
	if [ -z "$dir" ] || [ ${#dir} -gt "$maxdir" ]; then
		dir=/tmp/cardshare-$(id -u)
	fi
}
`

// removeSocketScript removes the guest socket if it is still a socket.
const removeSocketScript = `[ -S "$sock" ] && rm -f -- "$sock"; exit 0
`

// removeScript removes the guest socket if it is still a socket, and then
// the default directory that Prepare made for it when it is that directory
// and empty (rmdir fails on anything else).
const removeScript = DefaultDirFunc + `[ -S "$sock" ] && rm -f -- "$sock"
default_dir
[ "$(dirname "$sock")" = "$dir" ] && rmdir -- "$dir" 2>/dev/null
exit 0
`

// Remove removes the socket at sock in the guest, if a socket is there,
// and the default socket directory when it is left empty: nothing of
// cardshare's stays in the guest after a clean stop.
func Remove(ctx context.Context, c *ssh.Client, sock string) error {
	_, err := Run(ctx, c, removeScript, "sock", sock, "maxdir", strconv.Itoa(unixsock.MaxDir))
	return err
}

// QuoteIfNeeded quotes s for POSIX sh only when it holds more than
// letters, digits and @%+=:,./_- (for commands shown to the user).
func QuoteIfNeeded(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return Quote(s)
}

// Quote quotes s for POSIX sh.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Unquote undoes Quote; other strings come back as they are.
func Unquote(s string) string {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return s
	}
	return strings.ReplaceAll(s[1:len(s)-1], `'\''`, `'`)
}

// MaxOutput caps what a guest script may print on standard output. The
// scripts print a few key=value lines, or a profile file for guestsetup;
// a guest whose shell prints without end must not grow the host process
// (`cardshare up` serves every guest).
const MaxOutput = 1 << 20

// ErrOutputTooLarge means a guest script printed more than MaxOutput bytes;
// the script was stopped.
var ErrOutputTooLarge = fmt.Errorf("guest script printed more than %d bytes", MaxOutput)

// Run runs script with /bin/sh in the guest, after assigning vars.
// The script travels on standard input, so the login shell only ever parses
// "/bin/sh -s", whatever shell it is (sh, bash, zsh, csh, fish). A script
// that prints more than MaxOutput bytes is stopped, with ErrOutputTooLarge.
func Run(ctx context.Context, c *ssh.Client, script string, vars ...string) ([]byte, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	var in bytes.Buffer
	for i := 0; i+1 < len(vars); i += 2 {
		fmt.Fprintf(&in, "%s=%s\n", vars[i], Quote(vars[i+1]))
	}
	in.WriteString(script)
	s.Stdin = &in
	var out, errb bytes.Buffer
	stdout := &cappedWriter{w: &out, n: MaxOutput, over: func() { s.Close() }}
	s.Stdout = stdout
	s.Stderr = &limitedWriter{w: &errb, n: 4096}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err = s.Run("/bin/sh -s")
	if stdout.exceeded() {
		return nil, ErrOutputTooLarge
	}
	if err != nil {
		if msg := strings.TrimSpace(errb.String()); msg != "" {
			return nil, fmt.Errorf("guest script: %w: %s", err, msg)
		}
		return nil, fmt.Errorf("guest script: %w", err)
	}
	return out.Bytes(), nil
}

// Prepare chooses and checks the guest socket path, and reads the guest's
// OS and pcsc-lite release.
func Prepare(ctx context.Context, c *ssh.Client, want string) (Info, error) {
	return prepare(want, prepareScript, func(script string, vars ...string) ([]byte, error) {
		return Run(ctx, c, script, vars...)
	})
}

// prepare checks want, runs script (pathScript first) with run and reads
// what it printed.
func prepare(want, script string, run func(script string, vars ...string) ([]byte, error)) (Info, error) {
	if want != "" {
		if err := CheckPath(want); err != nil {
			return Info{}, err
		}
	}
	out, err := run(script, "want", want, "maxdir", strconv.Itoa(unixsock.MaxDir))
	if err != nil {
		return Info{}, err
	}
	return parseInfo(out)
}

// parseInfo reads the key=value lines that pathScript and probeScript
// print; other lines (a guest shell's start-up noise) are ignored.
func parseInfo(out []byte) (Info, error) {
	g, unsafe, fail := scanInfo(out)
	switch {
	case fail != "":
		return Info{}, errors.New(fail)
	case unsafe != "":
		return g, fmt.Errorf("%w: %s", ErrUnsafeDir, unsafe)
	case g.Socket == "":
		return g, fmt.Errorf("guest script printed no socket path (output %q)", Truncate(out, 200))
	}
	return g, CheckPath(g.Socket)
}

// scanInfo reads the key=value lines of out: the Info, the last unsafe
// directory and the first error= message.
func scanInfo(out []byte) (g Info, unsafe, fail string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "error":
			if fail == "" {
				fail = v
			}
		case "socket":
			g.Socket = v
		case "exists":
			g.Exists = v
		case "os":
			g.OS = v
		case "release":
			g.Release = v
		case "unsafe":
			unsafe = v
		}
	}
	return g, unsafe, fail
}

// CheckPath refuses a guest socket path that is not absolute, holds a
// newline or NUL, or does not fit in sun_path (unixsock.MaxPath).
func CheckPath(p string) error {
	switch {
	case !path.IsAbs(p):
		return fmt.Errorf("guest socket %q is not an absolute path", p)
	case strings.ContainsAny(p, "\n\x00"):
		return fmt.Errorf("guest socket %q contains a newline or NUL", p)
	case len(p) > unixsock.MaxPath:
		return fmt.Errorf("guest socket %q is %d bytes long; Unix sockets allow %d", p, len(p), unixsock.MaxPath)
	}
	return nil
}

// ClearStale removes a socket left at path by an earlier run, but only when
// nothing serves it. sshd never unlinks the socket of a remote forward, and
// its StreamLocalBindUnlink option needs the guest's root to set it.
//
// The probe goes through the guest's sshd (direct-streamlocal): a refused
// connect means the socket is stale. A listener that accepts and answers a
// CMD_VERSION, or closes, is alive and is left alone (ErrInUse). A listener
// that accepts but stays silent for wait is left alone too (ErrSilent): it
// may be the forward of an SSH connection that died without the guest's
// sshd noticing yet, but it may as well be a live program that is slow,
// and removing its socket would cut it off for good. Only when ownLost is
// set (sock is where the caller's own forward listened, on a connection
// that it lost) is a silent listener that dead forward, and removed.
func ClearStale(ctx context.Context, c *ssh.Client, sock string, wait time.Duration, ownLost bool) (removed bool, err error) {
	conn, err := c.Dial("unix", sock)
	if err != nil {
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) || oe.Reason != ssh.ConnectionFailed {
			return false, fmt.Errorf("check whether %s is in use: %w", sock, err)
		}
	} else {
		alive := answers(conn, wait)
		conn.Close()
		if alive {
			return false, fmt.Errorf("%w: %s", unixsock.ErrSocketInUse, sock)
		}
		if !ownLost {
			return false, fmt.Errorf("%w: %s (no answer within %v)", ErrSilent, sock, wait)
		}
	}
	if _, err := Run(ctx, c, removeSocketScript, "sock", sock); err != nil {
		return false, fmt.Errorf("remove stale socket %s: %w", sock, err)
	}
	return true, nil
}

// answers reports whether the listener behind conn reacts to a CMD_VERSION
// within wait, by replying or by closing.
func answers(conn io.ReadWriteCloser, wait time.Duration) bool {
	done := make(chan bool, 1)
	go func() {
		if _, err := conn.Write(pcsc.AppendVersionRequest(nil, pcsc.V44)); err != nil {
			done <- true
			return
		}
		_, err := conn.Read(make([]byte, 12))
		done <- err == nil || errors.Is(err, io.EOF)
	}()
	select {
	case alive := <-done:
		return alive
	case <-time.After(wait):
		return false
	}
}

// cappedWriter writes up to n bytes to w; the write that would go over
// calls over once (which stops the script) and fails.
type cappedWriter struct {
	w    io.Writer
	n    int
	over func()
	mu   sync.Mutex
	hit  bool
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > c.n {
		if !c.hit {
			c.hit = true
			go c.over()
		}
		return 0, ErrOutputTooLarge
	}
	c.n -= len(p)
	return c.w.Write(p)
}

func (c *cappedWriter) exceeded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if len(q) > l.n {
			q = q[:l.n]
		}
		l.w.Write(q)
		l.n -= len(q)
	}
	return len(p), nil
}

// Truncate returns b as a string of at most n bytes and "...", to quote a
// script's unexpected output in an error.
func Truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
