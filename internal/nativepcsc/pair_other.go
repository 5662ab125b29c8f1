//go:build !unix

package nativepcsc

import "net"

// socketPair returns the two ends of an in-memory connection where Unix
// socket pairs are missing (Windows).
func socketPair() (client, server net.Conn, err error) {
	c, s := net.Pipe()
	return c, s, nil
}
