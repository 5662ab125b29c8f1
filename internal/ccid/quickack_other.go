//go:build !linux

package ccid

import (
	"io"
	"net"
)

// chardevReader is what VSCard messages are read from (TCP_QUICKACK is
// Linux's).
func chardevReader(conn net.Conn) io.Reader { return conn }
