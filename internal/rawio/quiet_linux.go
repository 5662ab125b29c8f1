//go:build linux

package rawio

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A Unix stream socket wakes its writer each time its reader takes data:
// unix_write_space (net/unix/af_unix.c) signals EPOLLOUT on every skb the
// peer consumes, whether or not the writer ever waited. The Go runtime
// registers every socket for EPOLLIN and EPOLLOUT, so each message a relay
// writes to pcscd or to a guest program wakes the relay once more, for
// nothing, when the peer reads it: a thread wake-up, two epoll_pwait calls
// and a trip through the scheduler per message, on a path whose cost is
// wake-ups. Traced (sched_switch) in `cardshare expose`, a sixth to a third
// of its sleeps were such wake-ups that found nothing to do, and nearly all
// of them had preempted pcscd on its way to the card (docs/benchmarks.md, issue 18).
//
// quietConn keeps such a socket out of the runtime's poller. The socket is
// watched by an epoll instance of its own for EPOLLIN only, and that epoll
// descriptor, readable whenever the socket has news for a reader, is what
// the runtime polls; an EPOLLOUT wake-up of the socket stops in the inner
// instance (ep_poll_callback drops events outside an item's mask). The rare
// write that finds the socket full registers it for EPOLLOUT in a second
// instance until it is done.

// quiet returns c as a quietConn, or nil when it cannot (c is no Unix
// stream socket, or the descriptors cannot be made).
func quiet(uc *net.UnixConn) net.Conn {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if rc.Control(func(s uintptr) {
		typ, err := syscall.GetsockoptInt(int(s), syscall.SOL_SOCKET, syscall.SO_TYPE)
		if err != nil || typ != syscall.SOCK_STREAM {
			return
		}
		if n, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0); e == 0 {
			fd = int(n)
		}
	}) != nil || fd < 0 {
		return nil
	}
	c := &quietConn{fd: fd, laddr: uc.LocalAddr(), raddr: uc.RemoteAddr()}
	if c.rf, c.rrc, err = watch(fd, syscall.EPOLLIN|syscall.EPOLLRDHUP); err != nil {
		syscall.Close(fd)
		return nil
	}
	// The original descriptor leaves the runtime's poller; the socket
	// stays open through fd.
	uc.Close()
	c.readFn = c.readFd
	c.writeFn = c.writeFd
	return c
}

// watch returns a pollable epoll instance that watches fd for events.
func watch(fd int, events uint32) (*os.File, syscall.RawConn, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		syscall.Close(ep)
		return nil, nil, err
	}
	if err := syscall.SetNonblock(ep, true); err != nil {
		syscall.Close(ep)
		return nil, nil, err
	}
	f := os.NewFile(uintptr(ep), "epoll")
	// A file the runtime could not add to its poller has no deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

type quietConn struct {
	fd           int
	laddr, raddr net.Addr
	closed       atomic.Bool

	// rf watches fd for readers; rrc runs every read and write on fd, so
	// that Close (which waits for it) never closes fd under one.
	rf  *os.File
	rrc syscall.RawConn

	fdIO
	readFn  func(uintptr) bool
	wfull   bool // the socket was full: wait in wf
	writeFn func(uintptr) bool
	wdl     atomic.Pointer[time.Time]

	// fmu guards wf, made at the first write that finds the socket full.
	fmu sync.Mutex
	wf  *os.File
	wrc syscall.RawConn
}

var _ net.Conn = (*quietConn)(nil)

// readFd reads once from the socket (rrc hands over the epoll descriptor).
func (c *quietConn) readFd(uintptr) bool { return c.readOnce(uintptr(c.fd)) }

// writeFd writes what it can of wbuf; it returns true in any case, with
// wfull set when the socket is full (the wait is in wf: rf never reports
// writability).
func (c *quietConn) writeFd(uintptr) bool {
	c.wfull = !c.writeSome(uintptr(c.fd))
	return true
}

func (c *quietConn) Read(p []byte) (int, error) {
	return c.read(c.rrc, c.readFn, p, c.fixErr)
}

func (c *quietConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	defer func() { c.wbuf = nil }()
	if d := c.wdl.Load(); d != nil && !d.IsZero() && !time.Now().Before(*d) {
		return 0, c.fixErr(os.ErrDeadlineExceeded)
	}
	if err := c.rrc.Write(c.writeFn); err != nil {
		return c.wn, c.fixErr(err)
	}
	for c.wfull && c.werr == 0 {
		wrc, err := c.waiter()
		if err != nil {
			return c.wn, c.fixErr(err)
		}
		err = wrc.Read(func(uintptr) bool { c.writeFd(0); return !c.wfull || c.werr != 0 })
		c.unwatchWrites()
		if err != nil {
			return c.wn, c.fixErr(err)
		}
	}
	if c.werr != 0 {
		return c.wn, os.NewSyscallError("write", c.werr)
	}
	return c.wn, nil
}

// waiter registers fd for writability in wf, made on first use, and
// returns what waits for it.
func (c *quietConn) waiter() (syscall.RawConn, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.closed.Load() {
		return nil, net.ErrClosed
	}
	if c.wf == nil {
		f, rc, err := watch(c.fd, syscall.EPOLLOUT)
		if err != nil {
			return nil, err
		}
		c.wf, c.wrc = f, rc
	} else if err := c.wrc.Control(func(ep uintptr) {
		err := syscall.EpollCtl(int(ep), syscall.EPOLL_CTL_ADD, c.fd, &syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(c.fd)})
		_ = err // EEXIST: still registered
	}); err != nil {
		return nil, err
	}
	var dl time.Time
	if d := c.wdl.Load(); d != nil {
		dl = *d
	}
	c.wf.SetReadDeadline(dl)
	return c.wrc, nil
}

// unwatchWrites ends the registration for writability, which would
// otherwise wake the runtime each time the peer reads.
func (c *quietConn) unwatchWrites() {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.wf != nil {
		c.wrc.Control(func(ep uintptr) { syscall.EpollCtl(int(ep), syscall.EPOLL_CTL_DEL, c.fd, nil) })
	}
}

func (c *quietConn) fixErr(err error) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// Close closes the socket; reads and writes under way return
// net.ErrClosed.
func (c *quietConn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	c.rf.Close() // waits for the reads and writes in rrc
	c.fmu.Lock()
	if c.wf != nil {
		c.wf.Close()
	}
	c.fmu.Unlock()
	// No read or write can start now: rf and wf are closed.
	return syscall.Close(c.fd)
}

// CloseWrite half-closes the socket.
func (c *quietConn) CloseWrite() error {
	var err error
	if cerr := c.rrc.Control(func(uintptr) { err = syscall.Shutdown(c.fd, syscall.SHUT_WR) }); cerr != nil {
		return c.fixErr(cerr)
	}
	return err
}

func (c *quietConn) LocalAddr() net.Addr  { return c.laddr }
func (c *quietConn) RemoteAddr() net.Addr { return c.raddr }

func (c *quietConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *quietConn) SetReadDeadline(t time.Time) error {
	return c.fixErr(c.rf.SetReadDeadline(t))
}

func (c *quietConn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.wdl.Store(&t)
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.wf != nil {
		c.wf.SetReadDeadline(t)
	}
	return nil
}

// SyscallConn gives access to the socket's descriptor.
func (c *quietConn) SyscallConn() (syscall.RawConn, error) { return quietRaw{c}, nil }

type quietRaw struct{ c *quietConn }

func (r quietRaw) Control(f func(uintptr)) error {
	return r.c.rrc.Control(func(uintptr) { f(uintptr(r.c.fd)) })
}

func (r quietRaw) Read(f func(uintptr) bool) error {
	return r.c.rrc.Read(func(uintptr) bool { return f(uintptr(r.c.fd)) })
}

func (r quietRaw) Write(f func(uintptr) bool) error {
	done := false
	err := r.c.rrc.Write(func(uintptr) bool { done = f(uintptr(r.c.fd)); return true })
	if err != nil || done {
		return r.c.fixErr(err)
	}
	wrc, err := r.c.waiter()
	if err != nil {
		return r.c.fixErr(err)
	}
	err = wrc.Read(func(uintptr) bool { return f(uintptr(r.c.fd)) })
	r.c.unwatchWrites()
	return r.c.fixErr(err)
}
