package pcsc

import (
	"fmt"
	"path"
)

// Policy is what one guest may do with the host's readers. pcscd sees
// every guest as cardshare's own process (its polkit checks and its
// per-client limits cannot tell VMs apart: IsClientAuthorized,
// src/auth.c:79-184 in pcsc-lite 2.5.1, asks about the peer process), so per-guest rules
// have to be applied by the proxy.
type Policy struct {
	// Readers lists patterns (path.Match syntax: * ? [...] and \ to
	// escape) of the reader names the guest may see and connect to.
	// Empty means every reader.
	Readers []string

	// DenyControl refuses SCardControl: reader escape commands, which
	// can reconfigure or update a reader. The guest gets
	// SCARD_E_UNSUPPORTED_FEATURE, what a driver answers to a control
	// code it does not know, so that programs probing for pinpad
	// features (CM_IOCTL_GET_FEATURE_REQUEST) carry on as with a plain
	// reader instead of failing.
	DenyControl bool
}

// Validate checks the reader patterns.
func (p *Policy) Validate() error {
	if p == nil {
		return nil
	}
	for _, r := range p.Readers {
		if _, err := path.Match(r, ""); err != nil {
			return fmt.Errorf("pcsc: reader pattern %q: %w", r, err)
		}
	}
	return nil
}

// Filters reports whether p hides any reader.
func (p *Policy) Filters() bool { return p != nil && len(p.Readers) > 0 }

// Allows reports whether the guest may see the reader name.
func (p *Policy) Allows(name string) bool {
	if !p.Filters() {
		return true
	}
	for _, r := range p.Readers {
		if ok, _ := path.Match(r, name); ok {
			return true
		}
	}
	return false
}
