package control

import (
	"errors"

	"golang.org/x/sys/windows"
)

// noUnixSockets reports whether err says that Winsock has no AF_UNIX:
// WSAEAFNOSUPPORT (10047) from socket(AF_UNIX, ...), which Windows before
// 10 version 1803 answers (AF_UNIX came with build 17063: Microsoft's
// "AF_UNIX comes to Windows", 2017) and so does Wine 10.0 ("socket:
// winapi error #10047" under scripts/wine-host.sh).
func noUnixSockets(err error) bool {
	return errors.Is(err, windows.WSAEAFNOSUPPORT)
}

// refused reports whether err is Winsock's "connection refused"
// (WSAECONNREFUSED, 10061), which Windows' AF_UNIX answers for a socket
// file that nothing serves. syscall.ECONNREFUSED does not match it on
// Windows: there it is a made-up number that no Winsock call returns.
func refused(err error) bool {
	return errors.Is(err, windows.WSAECONNREFUSED)
}

// afNoSupport and connRefused are what socket(AF_UNIX, ...) and connect
// fail with where there is no AF_UNIX and where nothing listens, for tests.
var afNoSupport, connRefused error = windows.WSAEAFNOSUPPORT, windows.WSAECONNREFUSED
