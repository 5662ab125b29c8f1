//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// killWithParent makes a child die with the test binary, should the binary
// die without running its cleanups.
func killWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// checkPCSCDHost reports why this machine cannot run StartPCSCD.
func checkPCSCDHost() error {
	if os.Geteuid() != 0 {
		return errors.New("StartPCSCD needs root: it runs pcscd in its own mount and network namespaces, " +
			"so that it leaves /run/pcscd alone and its vpcd is reachable on loopback only; run the tests as root, as CI does")
	}
	return nil
}

// pcscdSysProcAttr puts pcscd in new mount and network namespaces. For
// Unshareflags with CLONE_NEWNS, Go also makes all mounts private in the
// child first, so pcscdScript's bind mounts stay inside. Pdeathsig kills
// pcscd if the test binary dies without cleaning up.
func pcscdSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET,
		Pdeathsig:    syscall.SIGKILL,
	}
}

// dialInNetns connects to 127.0.0.1:port in the network namespace of process
// pid. It switches one locked OS thread into the namespace only long enough
// to create and connect the socket: a socket stays in the namespace it was
// made in, whichever thread uses it later.
func dialInNetns(pid, port int) (*net.TCPConn, error) {
	type result struct {
		conn *net.TCPConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		conn, restored, err := dialInNetnsLocked(pid, port)
		if restored {
			runtime.UnlockOSThread()
		}
		// Otherwise the thread, stuck in pcscd's namespace, ends with this
		// goroutine.
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// dialInNetnsLocked does dialInNetns's work on a locked thread. restored
// reports whether the thread is back in its own namespace.
func dialInNetnsLocked(pid, port int) (conn *net.TCPConn, restored bool, err error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, err
	}
	defer self.Close()
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, true, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace of pid %d: %w", pid, err)
	}
	defer func() {
		restored = unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil
	}()

	// A new network namespace starts with lo down.
	if err := loopbackUp(); err != nil {
		return nil, false, fmt.Errorf("bring up lo: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, false, err
	}
	// vpcd listens with a backlog of 0 and accepts only when pcscd polls
	// it; do not let a blocking connect retry SYNs for minutes.
	tv := unix.NsecToTimeval(pcscdCardTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, false, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, false, fmt.Errorf("connect to 127.0.0.1:%d: %w", port, err)
	}
	f := os.NewFile(uintptr(fd), "vpcd")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, false, err
	}
	return c.(*net.TCPConn), false, nil
}

// loopbackUp sets the IFF_UP flag of lo in the current thread's network
// namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
