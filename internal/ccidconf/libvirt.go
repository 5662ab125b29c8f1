package ccidconf

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cardshare/cardshare/internal/ccid"
)

// Runner runs a command and returns its standard output (internal/vm's
// ExecRunner has this signature).
type Runner func(ctx context.Context, dir, name string, args ...string) ([]byte, error)

// ErrNoDomain: virsh knows no domain of that name.
var ErrNoDomain = errors.New("ccidconf: no libvirt domain of that name")

// DomainChardevs reads the chardevs of libvirt domain name's passthrough
// smartcards with `virsh dumpxml`. Like internal/vm, a non-root user
// without LIBVIRT_DEFAULT_URI is looked up in qemu:///session, then in
// qemu:///system. The domain's XML carries the chardevs whether or not it
// runs.
func DomainChardevs(ctx context.Context, run Runner, name string) ([]ccid.Endpoint, error) {
	uris := [][]string{nil}
	if os.Getenv("LIBVIRT_DEFAULT_URI") == "" && os.Geteuid() != 0 {
		uris = append(uris, []string{"-c", "qemu:///system"})
	}
	var firstErr error
	for _, uri := range uris {
		out, err := run(ctx, "", "virsh", append(append([]string{}, uri...), "dumpxml", name)...)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		eps, err := ChardevsFromDomainXML(out)
		if err != nil {
			return nil, fmt.Errorf("libvirt domain %s: %w", name, err)
		}
		return eps, nil
	}
	return nil, fmt.Errorf("%w: %s (virsh dumpxml: %w)", ErrNoDomain, name, firstErr)
}
