package guestsetup

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cardshare/cardshare/internal/guestsock"
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
	fmt.Fprintf(&b, "PCSCLITE_CSOCK_NAME=%s\nexport PCSCLITE_CSOCK_NAME\n", guestsock.Quote(socket))
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
			return fmt.Errorf("%w: guest socket %q contains %q; choose a path of letters, digits and /._-+@:,=~", ErrSetup, p, r)
		}
	}
	return nil
}

// ExportLine is the sh line that points programs at socket.
func ExportLine(socket string) string {
	return "export PCSCLITE_CSOCK_NAME=" + shellQuoteIfNeeded(socket)
}

func shellQuoteIfNeeded(s string) string {
	if s != "" && checkPlainPath(s) == nil && !strings.HasPrefix(s, "~") {
		return s
	}
	return guestsock.Quote(s)
}
