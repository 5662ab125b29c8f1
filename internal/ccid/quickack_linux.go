//go:build linux

package ccid

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ackingReader reads a TCP chardev and turns TCP_QUICKACK back on after
// each read (the kernel clears it, tcp(7)), so QEMU's next segment is
// acknowledged at once rather than after the delayed-ACK timeout: with a
// QEMU without nodelay=on, its Nagle would otherwise hold each answer
// back until that ACK.
type ackingReader struct {
	r  io.Reader
	rc syscall.RawConn
}

func (a ackingReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	a.rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	return n, err
}

// chardevReader is what VSCard messages are read from: conn itself, or
// conn with quick ACKs for TCP.
func chardevReader(conn net.Conn) io.Reader {
	if tc, ok := conn.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			return ackingReader{conn, rc}
		}
	}
	return conn
}
