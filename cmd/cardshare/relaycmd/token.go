package relaycmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// maxTokenInput bounds what is read for a token: a token is under 100
// bytes, and a file or pipe of anything else must not be read whole.
const maxTokenInput = 4 << 10

// tokenWarning is printed when the token comes on the command line, where
// /proc/PID/cmdline and the shell history show it to other users of the
// guest, who could redeem it first while it is valid (10 minutes).
const tokenWarning = "cardshare: warning: --token shows the pairing token to other users of this guest (process list, shell history) until it is used\n" +
	"cardshare: hint: pipe it on standard input (`printf %s \"$TOKEN\" | cardshare relay join ADDR`), type it at the prompt, or use --token-file\n"

// readToken returns the pairing token: --token (with a warning), the file
// of --token-file (which only its owner may read), or standard input,
// read without echo from a terminal after a prompt on stderr.
func readToken(o *relayJoinOptions, stdin io.Reader, stderr io.Writer) (string, error) {
	switch {
	case o.token != "" && o.tokenFile != "":
		return "", cmdutil.Usage("join takes --token or --token-file, not both", "prefer --token-file or standard input: --token shows the token to other users")
	case o.token != "":
		io.WriteString(stderr, tokenWarning)
		return o.token, nil
	case o.tokenFile != "":
		if err := unixsock.CheckPrivateFile(o.tokenFile); err != nil {
			if errors.Is(err, unixsock.ErrUnsafePermissions) {
				return "", cmdutil.WithHint(fmt.Errorf("token file: %w", err), "other users could read the token and pair first: `chmod 600 "+o.tokenFile+"`, or pipe the token on standard input")
			}
			return "", fmt.Errorf("token file: %w", err)
		}
		f, err := os.Open(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		defer f.Close()
		return readTokenFrom(f)
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "pairing token (from `cardshare relay pair` on the host): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read the token: %w", err)
		}
		return checkedToken(b)
	}
	return readTokenFrom(stdin)
}

func readTokenFrom(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxTokenInput+1))
	if err != nil {
		return "", fmt.Errorf("read the token: %w", err)
	}
	if len(b) > maxTokenInput {
		return "", cmdutil.Usage("the token input is too long to be a pairing token", "give the token alone, as `cardshare relay pair` printed it")
	}
	return checkedToken(b)
}

func checkedToken(b []byte) (string, error) {
	t := strings.TrimSpace(string(bytes.TrimPrefix(b, []byte("\ufeff"))))
	if t == "" {
		return "", cmdutil.Usage("join needs the pairing token", "run `cardshare relay pair NAME` on the host; then type the token at the prompt, pipe it (`printf %s \"$TOKEN\" | cardshare relay join ADDR`) or use --token-file")
	}
	return t, nil
}
