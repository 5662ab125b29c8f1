package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
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
// TCP_NODELAY set and do their I/O with RawIO.
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
	return RawIO(c), nil
}

// noDelay turns Nagle's algorithm off. Go does that for every TCP connection
// already; cardshare says so explicitly because one PC/SC round trip is
// several small writes each way, and with Nagle and delayed ACKs each of them
// stalls 40 ms (baseline.md: 0.008× direct, 21 % of round trips over 10 ms).
func noDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}

// rawListener does the I/O of the connections it accepts with RawIO, and
// sets TCP_NODELAY on TCP ones.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	noDelay(c)
	return RawIO(c), nil
}

// acceptHandshakes accepts on ln until ctx is done (nil) or ln fails, and
// runs handle for each connection in a goroutine of wg, holding one of the
// slots of slots: handle calls release when the connection's handshake is
// over (more than once is fine). A connection that finds every slot taken
// is passed to refuse and closed at once, so unauthenticated peers cost at
// most len(slots) handshakes. Accept errors that are not the listener's end
// (out of descriptors, a connection reset before it was accepted) are passed
// to refuse and retried after a growing pause, as net/http does.
func acceptHandshakes(ctx context.Context, ln net.Listener, slots chan struct{}, wg *sync.WaitGroup,
	refuse func(addr net.Addr, err error), handle func(c net.Conn, release func())) error {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("relay: accept: %w", err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			refuse(ln.Addr(), fmt.Errorf("accept: %w", err))
			if !sleep(ctx, pause) {
				return nil
			}
			continue
		}
		pause = 0
		select {
		case slots <- struct{}{}:
		default:
			refuse(c.RemoteAddr(), errors.New("too many connections in their handshake"))
			c.Close()
			continue
		}
		wg.Go(func() {
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			handle(c, release)
		})
	}
}
