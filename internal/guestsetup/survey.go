package guestsetup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/guestsock"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// surveyScript reads, without changing anything, what setup needs to know
// about the guest: the default socket path (chosen exactly like
// prepareScript does), the OS and init system, the login shell, and the
// exact bytes of the files setup may change. Each file is reported as
// "file=W N PATH" followed by its N bytes and a newline.
const surveyScript = guestsock.DefaultDirFunc + `
umask 022
fail() { printf '%s\n' "error=$*"; exit 0; }
[ -n "${HOME:-}" ] && [ -d "$HOME" ] || fail "the login user has no home directory"
cd "$HOME" || fail "cannot enter $HOME"
printf '%s\n' "home=$HOME"
printf '%s\n' "os=$(uname -s)"
[ -d "$sdroot" ] && printf '%s\n' "systemd=1"
me=$(id -un)
sh=
if command -v getent >/dev/null 2>&1; then sh=$(getent passwd "$me" | cut -d: -f7); fi
[ -n "$sh" ] || sh=$(grep "^$me:" /etc/passwd 2>/dev/null | cut -d: -f7)
[ -n "$sh" ] || sh=${SHELL:-}
printf '%s\n' "shell=$sh"
[ -w . ] && printf '%s\n' "homewritable=1"
sock=$want
if [ -z "$sock" ]; then
	default_dir
	sock=$dir/pcscd.comm
fi
printf '%s\n' "socket=$sock"
for d in .config .config/environment.d; do
	if [ -d "$d" ]; then w=0; [ -w "$d" ] && w=1; printf '%s\n' "dir=$w $d"; fi
done
dump() {
	if [ -L "$1" ] && [ ! -e "$1" ]; then printf '%s\n' "odd=dangling symbolic link $1"; return 0; fi
	[ -e "$1" ] || return 0
	[ -f "$1" ] || { printf '%s\n' "odd=not a regular file $1"; return 0; }
	[ -r "$1" ] || { printf '%s\n' "odd=not readable $1"; return 0; }
	w=0; [ -w "$1" ] && w=1
	n=$(($(wc -c < "$1")))
	printf '%s\n' "file=$w $n $1"
	cat -- "$1"
	echo
}
for f in ` + fileProfile + ` ` + fileBashProfile + ` ` + fileBashLogin + ` ` + fileZProfile + ` ` + fileEnvD + `; do dump "$f"; done
if [ "$system" = 1 ]; then
	if [ "$(id -u)" = 0 ]; then
		printf '%s\n' "sudo=root"
	elif ! command -v "$sudo" >/dev/null 2>&1; then
		printf '%s\n' "sudo=missing"
	elif err=$("$sudo" -n true 2>&1 </dev/null); then
		printf '%s\n' "sudo=ok"
	else
		printf '%s\n' "sudo=refused"
		printf '%s\n' "sudoerr=$(printf '%s\n' "$err" | head -n 1)"
	fi
	for c in "$systemctl" "$tmpfiles"; do command -v "$c" >/dev/null 2>&1 || printf '%s\n' "nocmd=$c"; done
	if command -v "$systemctl" >/dev/null 2>&1; then
		for u in pcscd.socket pcscd.service; do
			e=$("$systemctl" is-enabled "$u" 2>/dev/null | head -n 1)
			a=$("$systemctl" is-active "$u" 2>/dev/null | head -n 1)
			printf '%s\n' "unit=$u ${e:-none} ${a:-unknown}"
		done
	fi
	if [ -L "$link" ]; then printf '%s\n' "link=$(readlink "$link")"; fi
	dump "$tmpconf"
fi
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
	out, err := guestsock.Run(ctx, c, surveyScript, "want", socket, "maxdir", strconv.Itoa(unixsock.MaxDir),
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
			return s, fmt.Errorf("%w: %s", ErrSetup, v)
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
				return s, fmt.Errorf("%w: %s changed while cardshare was reading it; run again", ErrSetup, f[2])
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
		return s, fmt.Errorf("guest survey printed no home directory (output %q)", guestsock.Truncate(out, 200))
	}
	return s, nil
}
