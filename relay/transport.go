package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cardshare/cardshare/internal/rawio"
)

// A relay address is "HOST:PORT" for TCP, or "vsock://CID:PORT" for VM
// sockets (see vsock.go). TLS runs on top of either.

// ListenAddr listens on addr: "HOST:PORT" for TCP, "vsock://CID:PORT" or
// "vsock://:PORT" for VM sockets. Connections it accepts on TCP have
// TCP_NODELAY set.
func ListenAddr(ctx context.Context, addr string) (net.Listener, error) {
	if rest, ok := strings.CutPrefix(addr, vsockScheme); ok {
		return listenVsock(rest)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen: %w", err)
	}
	return rawListener{ln}, nil
}

// ErrBadAddr means an address that a host cannot dial.
var ErrBadAddr = errors.New("relay: bad address: want HOST:PORT or vsock://CID:PORT")

// CheckAddr reports whether DialAddr can dial addr: HOST:PORT with both
// parts, or vsock://CID:PORT.
func CheckAddr(addr string) error {
	if rest, ok := strings.CutPrefix(addr, vsockScheme); ok {
		if _, own, _, err := parseVsock(rest); err != nil || own {
			return fmt.Errorf("%w: %q", ErrBadAddr, addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%w: %q", ErrBadAddr, addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%w: %q", ErrBadAddr, addr)
	}
	return nil
}

// DialAddr connects to addr as ListenAddr parses it. TCP connections have
// TCP_NODELAY set and do their I/O with rawio.RawIO.
func DialAddr(ctx context.Context, addr string) (net.Conn, error) {
	if rest, ok := strings.CutPrefix(addr, vsockScheme); ok {
		return dialVsock(ctx, rest)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: connect: %w", err)
	}
	noDelay(c)
	return rawio.RawIO(c), nil
}

// noDelay turns Nagle's algorithm off. Go does that for every TCP connection
// already; cardshare says so explicitly because one PC/SC round trip is
// several small writes each way, and with Nagle and delayed ACKs each of them
// stalls 40 ms: socat without nodelay measured 0.008× the direct socket's
// rate, with 21 % of round trips over 10 ms (docs/benchmarks.md has the
// socat baselines with nodelay).
func noDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}

// rawListener does the I/O of the connections it accepts with rawio.RawIO, and
// sets TCP_NODELAY on TCP ones.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	noDelay(c)
	return rawio.RawIO(c), nil
}

// aLongTimeAgo is a deadline in the past, to wake blocked reads.
var aLongTimeAgo = time.Unix(1, 0)

// errTooManyHandshakes is why a connection is refused at accept while
// every handshake slot is taken.
var errTooManyHandshakes = errors.New("too many connections in their handshake")
