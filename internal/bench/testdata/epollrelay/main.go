//go:build linux

// Command epollrelay is the fastest Go relay BenchmarkRelay knows how to
// write: gorelay's job (accept on one address, copy each connection to a
// new connection to another, both ways; no TLS, no multiplexing) done the
// way socat does it, by one thread waiting in its own epoll instance, with
// the Go runtime's poller and scheduler out of the path. It is the ceiling
// for a Go relay on this machine, as gorelay is the floor.
//
// Its system calls are raw (syscall.RawSyscall): through syscall.Syscall,
// every wait would tell the runtime it is entering a system call, which
// wakes the sysmon thread (BenchmarkRelay measured 7.7 sleeps per APDU that
// way, 4.3 raw, and 0.92× socat instead of 1.2×). A goroutine blocked in a
// raw system call keeps its P, so sysmon preempts it every 10 ms (SIGURG
// interrupts the wait): fine for a benchmark, not for a daemon that idles
// for days. cardshare's relay cannot work this way anyway: crypto/tls and
// yamux need net.Conns whose reads block a goroutine, in the runtime's
// poller.
//
// usage: epollrelay LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: epollrelay LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "epollrelay:", err)
		os.Exit(1)
	}
}

func run(lnet, laddr, dnet, daddr string) error {
	runtime.LockOSThread()
	ln, err := net.Listen(lnet, laddr)
	if err != nil {
		return err
	}
	lfd, err := detach(ln)
	if err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	watch := func(fd int) error {
		return syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
	if err := watch(lfd); err != nil {
		return err
	}
	peer := map[int]int{} // each relayed descriptor to the one it copies to
	buf := make([]byte, 64<<10)
	events := make([]syscall.EpollEvent, 64)
	for {
		n, err := epollWait(ep, events)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				a, b, err := accept(lfd, lnet == "tcp", dnet, daddr)
				if err != nil {
					continue // the client sees its connection close
				}
				peer[a], peer[b] = b, a
				watch(a)
				watch(b)
				continue
			}
			to, ok := peer[fd]
			if !ok {
				continue
			}
			if r, err := rawIO(syscall.SYS_READ, fd, buf); err != syscall.EAGAIN && (r <= 0 || writeAll(to, buf[:r]) != nil) {
				syscall.Close(fd) // also leaves the epoll set
				syscall.Close(to)
				delete(peer, fd)
				delete(peer, to)
			}
		}
	}
}

// epollWait waits for events on ep without telling the runtime.
func epollWait(ep int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)),
		^uintptr(0), 0, 0) // no timeout, no signal mask
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawIO reads or writes b on the non-blocking fd: trap is SYS_READ or
// SYS_WRITE.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// accept takes the next connection on lfd and dials its upstream; both come
// back as non-blocking descriptors with TCP_NODELAY on TCP.
func accept(lfd int, tcp bool, dnet, daddr string) (int, int, error) {
	a, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
	if err != nil {
		return 0, 0, err
	}
	if tcp {
		syscall.SetsockoptInt(a, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	c, err := net.Dial(dnet, daddr) // Go sets TCP_NODELAY
	if err != nil {
		syscall.Close(a)
		return 0, 0, err
	}
	b, err := detach(c)
	c.Close()
	if err != nil {
		syscall.Close(a)
		return 0, 0, err
	}
	return a, b, nil
}

// detach returns a non-blocking duplicate of c's descriptor, outside the Go
// runtime's poller. c stays open: closing a Unix listener removes its
// socket.
func detach(c any) (int, error) {
	f, err := c.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return 0, err
	}
	syscall.CloseOnExec(fd)
	return fd, syscall.SetNonblock(fd, true)
}

// writeAll writes b to fd, waiting in poll while fd's buffer is full (rare:
// the messages are small).
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := rawIO(syscall.SYS_WRITE, fd, b)
		switch {
		case err == syscall.EAGAIN:
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
				return err
			}
		case err != nil:
			return err
		default:
			b = b[n:]
		}
	}
	return nil
}
