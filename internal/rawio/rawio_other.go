//go:build !linux

package rawio

import "net"

// RawIO returns c: raw system calls are used on Linux only.
func RawIO(c net.Conn) net.Conn { return c }
