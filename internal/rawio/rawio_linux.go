//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// RawIO returns c with Read and Write done by raw system calls inside the
// runtime poller, when c has a file descriptor (*net.UnixConn, *net.TCPConn);
// it returns any other connection unchanged.
//
// The Go runtime wakes its sysmon thread on the first system call after the
// process was idle (runtime.entersyscall), and sysmon then sleeps and wakes
// every 20 µs until the process is idle again. A relay of small
// request-reply messages goes idle after every message, so each APDU cost
// several extra thread wake-ups and sleeps: more CPU time in context
// switches than in the relay itself. Descriptors of net connections are
// non-blocking, so a raw read or write never blocks and needs no
// entersyscall; waiting stays with the poller, deadlines and Close work as
// for any net.Conn.
//
// A Unix stream socket is moreover kept out of the runtime's poller (see
// quiet_linux.go): it does not wake the process each time its peer reads.
func RawIO(c net.Conn) net.Conn {
	if uc, ok := c.(*net.UnixConn); ok {
		if q := quiet(uc); q != nil {
			return q
		}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawConn{Conn: c, rc: rc}
	// The closures are made once: a Read or Write allocates nothing.
	r.readFn = r.readFd
	r.writeFn = r.writeFd
	return r
}

var _ net.Conn = (*rawConn)(nil)

type rawConn struct {
	net.Conn
	rc syscall.RawConn

	// rmu and wmu guard the state of one Read and one Write: net.Conn
	// allows concurrent calls, which the poller serializes anyway.
	rmu     sync.Mutex
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

// readFd reads once; it returns false to wait for readability.
func (c *rawConn) readFd(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerr = int(n), e
		return true
	}
}

// writeFd writes all of wbuf; it returns false to wait for writability.
func (c *rawConn) writeFd(fd uintptr) bool {
	for len(c.wbuf) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[0])), uintptr(len(c.wbuf)))
		switch e {
		case 0:
			c.wn += int(n)
			c.wbuf = c.wbuf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerr != 0:
		return 0, os.NewSyscallError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	if err == nil && c.werr != 0 {
		err = os.NewSyscallError("write", c.werr)
	}
	return c.wn, err
}

// SyscallConn gives access to the descriptor, as the wrapped connection
// does.
func (c *rawConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// CloseWrite half-closes c when the wrapped connection can, so that a relay
// (bridge.Pipe) still half-closes through the wrapper.
func (c *rawConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
