//go:build linux

package relay

import (
	"net"
	"syscall"
	"testing"
)

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
