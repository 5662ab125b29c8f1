//go:build linux

package vcard

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// setQuickAck turns on TCP_QUICKACK (tcp(7)) so the next segment that arrives
// is acknowledged at once instead of after the delayed-ACK timeout.
func setQuickAck(rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("set TCP_QUICKACK: %w", err)
	}
	return nil
}
