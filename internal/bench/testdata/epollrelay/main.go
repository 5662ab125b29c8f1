//go:build linux

// Command epollrelay is the fastest Go relay BenchmarkRelay knows how to
// write: gorelay's job (accept on one address, copy each connection to a
// new connection to another, both ways; no TLS, no multiplexing) done the
// way socat does it, by one thread waiting in its own epoll instance, with
// the Go runtime's poller and scheduler out of the path. It is the ceiling
// for a Go relay on this machine, as gorelay is the floor; cardshare's relay
// cannot work this way, since crypto/tls and yamux need blocking net.Conns.
//
// usage: epollrelay LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

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
		n, err := syscall.EpollWait(ep, events, -1)
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
			if r, err := syscall.Read(fd, buf); err != syscall.EAGAIN && (r <= 0 || writeAll(to, buf[:r]) != nil) {
				syscall.Close(fd) // also leaves the epoll set
				syscall.Close(to)
				delete(peer, fd)
				delete(peer, to)
			}
		}
	}
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

// writeAll writes b to fd, waiting in poll while fd's buffer is full.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
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
