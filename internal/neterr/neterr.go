// Package neterr says what a failed network call means, the same way on
// every system. On Windows, Winsock and the pipe calls fail with their own
// numbers (WSAECONNREFUSED is 10061, ERROR_BROKEN_PIPE 109), and Go's
// syscall.ECONNREFUSED and its kind are made-up numbers there that no call
// returns: errors.Is(err, syscall.ECONNREFUSED) is never true on Windows.
// Each function here checks the numbers of the system it is built for.
package neterr

import (
	"errors"
	"syscall"
)

// Refused reports "connection refused": nothing listens at the address,
// or a Unix socket file is left over with nothing behind it.
func Refused(err error) bool { return isOne(err, refused) }

// HostUnreachable reports "no route to host".
func HostUnreachable(err error) bool { return isOne(err, hostUnreachable) }

// NetUnreachable reports "network unreachable".
func NetUnreachable(err error) bool { return isOne(err, netUnreachable) }

// Reset reports that the peer went away under a read or a write: the
// connection was reset or aborted, or the pipe is broken. It is how a
// connection that the other side closed with unread data ends, so it is
// an ordinary end, not a fault.
func Reset(err error) bool { return isOne(err, reset) }

// NoUnixSockets reports that the system has no AF_UNIX: a sandbox that
// filters the family, Windows before 10 version 1803, or Wine 10 (Winsock
// WSAEAFNOSUPPORT, "socket: winapi error #10047" there).
func NoUnixSockets(err error) bool { return isOne(err, noUnixSockets) }

func isOne(err error, errnos []syscall.Errno) bool {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
