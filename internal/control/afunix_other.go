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

// afNoSupport is what socket(AF_UNIX, ...) fails with where there is no
// AF_UNIX, for tests.
var afNoSupport error = syscall.EAFNOSUPPORT
