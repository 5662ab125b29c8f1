package cmdutil

import (
	"fmt"
	"path"
	"strings"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// GuestPolicy is the reader policy of expose's flags or a config file's
// guest: nil when it allows everything.
func GuestPolicy(readers []string, control string) (*pcsc.Policy, error) {
	p := &pcsc.Policy{Readers: readers}
	switch control {
	case "", "allow":
	case "deny":
		p.DenyControl = true
	default:
		return nil, Usage(fmt.Sprintf("--control %q is neither allow nor deny", control), "use --control deny to refuse SCardControl, or leave it out")
	}
	for _, r := range readers {
		if _, err := path.Match(r, ""); err != nil || strings.TrimSpace(r) == "" {
			return nil, Usage(fmt.Sprintf("reader pattern %q is malformed", r), `patterns use * ? and [...], as shell globs do: --readers "Yubico YubiKey*"`)
		}
	}
	if len(readers) == 0 && !p.DenyControl {
		return nil, nil
	}
	return p, nil
}
