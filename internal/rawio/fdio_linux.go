//go:build linux

package rawio

import (
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// fdIO is the state of one Read and one Write done as raw system calls on
// a non-blocking descriptor, kept in fields so that the functions handed to
// syscall.RawConn are made once and a Read or Write allocates nothing.
// rmu and wmu guard it: net.Conn allows concurrent calls, which the poller
// serializes anyway.
type fdIO struct {
	rmu  sync.Mutex
	rbuf []byte
	rn   int
	rerr syscall.Errno

	wmu  sync.Mutex
	wbuf []byte
	wn   int
	werr syscall.Errno
}

// readOnce reads once from fd into rbuf; it returns false when fd has
// nothing to read (EAGAIN).
func (s *fdIO) readOnce(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rn, s.rerr = int(n), e
		return true
	}
}

// writeSome writes what it can of wbuf to fd; it returns false when fd is
// full (EAGAIN) with wbuf not yet written.
func (s *fdIO) writeSome(fd uintptr) bool {
	for len(s.wbuf) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.wbuf[0])), uintptr(len(s.wbuf)))
		switch e {
		case 0:
			s.wn += int(n)
			s.wbuf = s.wbuf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = e
			return true
		}
	}
	return true
}

// read is a Read of p through rc, whose waits end in readFn (a function
// that calls readOnce); fix maps an error of rc's.
func (s *fdIO) read(rc syscall.RawConn, readFn func(uintptr) bool, p []byte, fix func(error) error) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.rbuf, s.rn, s.rerr = p, 0, 0
	err := rc.Read(readFn)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, fix(err)
	case s.rerr != 0:
		return 0, os.NewSyscallError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}
