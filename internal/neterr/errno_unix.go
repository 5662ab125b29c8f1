//go:build !windows

package neterr

import "syscall"

var (
	refused         = []syscall.Errno{syscall.ECONNREFUSED}
	hostUnreachable = []syscall.Errno{syscall.EHOSTUNREACH}
	netUnreachable  = []syscall.Errno{syscall.ENETUNREACH}
	reset           = []syscall.Errno{syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED}
	noUnixSockets   = []syscall.Errno{syscall.EAFNOSUPPORT}
)
