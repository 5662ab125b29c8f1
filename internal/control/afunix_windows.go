package control

import (
	"errors"

	"golang.org/x/sys/windows"
)

// noUnixSockets reports whether err says that Winsock has no AF_UNIX:
// WSAEAFNOSUPPORT (10047) from socket(AF_UNIX, ...), which is what Wine
// 10 and Windows before 10 version 1803 answer (Microsoft's "AF_UNIX comes
// to Windows", 2017; Wine's dlls/ws2_32 has no AF_UNIX family).
func noUnixSockets(err error) bool {
	return errors.Is(err, windows.WSAEAFNOSUPPORT)
}

// afNoSupport is what socket(AF_UNIX, ...) fails with where there is no
// AF_UNIX, for tests.
var afNoSupport error = windows.WSAEAFNOSUPPORT
