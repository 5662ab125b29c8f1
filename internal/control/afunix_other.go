//go:build !windows

package control

import (
	"errors"
	"syscall"
)

// noUnixSockets reports whether err says that the system has no AF_UNIX
// (EAFNOSUPPORT): a sandbox that filters the socket family, say.
func noUnixSockets(err error) bool {
	return errors.Is(err, syscall.EAFNOSUPPORT)
}

// refused reports whether err is "connection refused": a socket file
// that nothing serves.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// afNoSupport and connRefused are what socket(AF_UNIX, ...) and connect
// fail with where there is no AF_UNIX and where nothing listens, for tests.
var afNoSupport, connRefused error = syscall.EAFNOSUPPORT, syscall.ECONNREFUSED
