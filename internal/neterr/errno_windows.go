package neterr

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// Winsock's numbers (winerror.h, "Windows Sockets Error Codes") and, for
// named pipes, the system error codes that a read or write on a pipe
// whose other end closed fails with: ERROR_BROKEN_PIPE (109) when reading,
// ERROR_NO_DATA (232, "the pipe is being closed") when writing, and
// ERROR_PIPE_NOT_CONNECTED (233).
var (
	refused         = []syscall.Errno{windows.WSAECONNREFUSED}
	hostUnreachable = []syscall.Errno{windows.WSAEHOSTUNREACH}
	netUnreachable  = []syscall.Errno{windows.WSAENETUNREACH}
	reset           = []syscall.Errno{windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.WSAESHUTDOWN,
		windows.ERROR_BROKEN_PIPE, windows.ERROR_NO_DATA, windows.ERROR_PIPE_NOT_CONNECTED}
	noUnixSockets = []syscall.Errno{windows.WSAEAFNOSUPPORT}
)
