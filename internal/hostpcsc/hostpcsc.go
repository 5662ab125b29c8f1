package hostpcsc

import (
	"context"
	"net"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/rawio"
)

// Source is where the host's PC/SC comes from.
type Source interface {
	// Dial opens one connection that speaks pcsc-lite's client protocol.
	Dial(ctx context.Context) (net.Conn, error)
	// Probe reports the protocol version and reader-array size the source speaks.
	Probe(ctx context.Context) (pcsc.Daemon, error)
	// String names the source for logs, status and doctor.
	String() string
}

// Socket is the host pcscd's Unix socket: each Dial is one client connection
// to the daemon, as libpcsclite makes. It is what cardshare has always
// served.
type Socket struct {
	// Path is the socket; empty means pcsc.DefaultSocket.
	Path string
}

var _ Source = Socket{}

func (s Socket) path() string {
	if s.Path == "" {
		return pcsc.DefaultSocket
	}
	return s.Path
}

// Dial connects to the socket. The connection does its I/O with
// rawio.RawIO: a relay of small messages costs fewer thread wake-ups so.
func (s Socket) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.path())
	if err != nil {
		return nil, err
	}
	return rawio.RawIO(c), nil
}

// Probe asks the daemon which protocol version it speaks (pcsc.Probe).
func (s Socket) Probe(ctx context.Context) (pcsc.Daemon, error) {
	return pcsc.Probe(ctx, s.path())
}

// String is "pcscd socket PATH".
func (s Socket) String() string { return "pcscd socket " + s.path() }
