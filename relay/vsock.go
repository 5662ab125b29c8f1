package relay

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mdlayher/vsock"
)

// VM sockets (AF_VSOCK) connect a guest and its hypervisor host without a
// network: QEMU/KVM (vhost-vsock), Firecracker, Cloud Hypervisor. A vsock
// address is a context ID (CID) and a port; the host is CID 2, and each guest
// gets its own CID from the hypervisor.
//
// vsock reaches only between a guest and its host, but any process on either
// side may connect, so relay mode runs the same TLS on it as on TCP: no
// plaintext mode, and no second code path to get wrong.

const vsockScheme = "vsock://"

// vsockCIDs names the well-known context IDs (linux/vm_sockets.h).
var vsockCIDs = map[string]uint32{
	"hypervisor": vsock.Hypervisor,
	"local":      vsock.Local,
	"host":       vsock.Host,
}

// parseVsock parses "CID:PORT", where CID is a number, "host", "local",
// "hypervisor", or empty for this machine's own CID.
func parseVsock(s string) (cid uint32, own bool, port uint32, err error) {
	c, p, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false, 0, fmt.Errorf("relay: vsock address %q: want vsock://CID:PORT", vsockScheme+s)
	}
	p64, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		return 0, false, 0, fmt.Errorf("relay: vsock address %q: bad port", vsockScheme+s)
	}
	if c == "" {
		return 0, true, uint32(p64), nil
	}
	if n, ok := vsockCIDs[c]; ok {
		return n, false, uint32(p64), nil
	}
	c64, err := strconv.ParseUint(c, 10, 32)
	if err != nil {
		return 0, false, 0, fmt.Errorf("relay: vsock address %q: CID must be a number, host, local or hypervisor", vsockScheme+s)
	}
	return uint32(c64), false, uint32(p64), nil
}

func listenVsock(s string) (net.Listener, error) {
	cid, own, port, err := parseVsock(s)
	if err != nil {
		return nil, err
	}
	var ln *vsock.Listener
	if own {
		ln, err = vsock.Listen(port, nil)
	} else {
		ln, err = vsock.ListenContextID(cid, port, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: listen on %s%s: %w", vsockScheme, s, err)
	}
	return ln, nil
}

func dialVsock(ctx context.Context, s string) (net.Conn, error) {
	cid, own, port, err := parseVsock(s)
	if err != nil {
		return nil, err
	}
	if own {
		return nil, fmt.Errorf("relay: vsock address %q names no CID to connect to (the host is vsock://2:PORT)", vsockScheme+s)
	}
	c, err := vsock.DialContext(ctx, cid, port, nil)
	if err != nil {
		return nil, fmt.Errorf("relay: connect: %w", err)
	}
	return c, nil
}
