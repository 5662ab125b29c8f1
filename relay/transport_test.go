//go:build linux

package relay

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection, made by
// ListenAddr and DialAddr.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := ListenAddr(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := DialAddr(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Every TCP leg has Nagle's algorithm off, on both ends.
func TestTransportNoDelay(t *testing.T) {
	a, b := tcpPair(t)
	for name, c := range map[string]net.Conn{"dialed": a, "accepted": b} {
		raw, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		raw.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		})
		if gerr != nil || v == 0 {
			t.Errorf("%s connection: TCP_NODELAY = %d, %v", name, v, gerr)
		}
	}
}
