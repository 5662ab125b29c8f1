//go:build unix

package nativepcsc

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// socketPair returns the two ends of a connected Unix stream socket pair:
// real sockets, so that the relay's raw I/O and half-close work on them as
// on a pcscd connection.
func socketPair() (client, server net.Conn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("nativepcsc: socketpair: %w", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "nativepcsc")
		c, err := net.FileConn(f) // dups the descriptor
		f.Close()
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			if i == 0 {
				syscall.Close(fds[1])
			}
			return nil, nil, fmt.Errorf("nativepcsc: socketpair: %w", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}
