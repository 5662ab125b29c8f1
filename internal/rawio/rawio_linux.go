//go:build linux

package rawio

import (
	"net"
	"os"
	"syscall"
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
	r.readFn = r.readOnce
	r.writeFn = r.writeSome
	return r
}

var _ net.Conn = (*rawConn)(nil)

type rawConn struct {
	net.Conn
	rc syscall.RawConn
	fdIO
	readFn, writeFn func(fd uintptr) bool
}

func (c *rawConn) Read(p []byte) (int, error) {
	return c.read(c.rc, c.readFn, p, func(err error) error { return err }) // the poller's errors as they are
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
