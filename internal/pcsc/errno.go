package pcsc

import (
	"errors"
	"syscall"
)

// isNoListener reports whether a dial failed because no daemon listens: the
// socket file is missing, or it is left over and refuses connections.
func isNoListener(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// isReset reports a connection reset, which is how a client sees pcscd
// closing a socket with unread data on it.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
