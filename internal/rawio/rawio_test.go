//go:build linux

package rawio

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/nettest"
)

func TestRawIOConn(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				var ln net.Listener
				if network == "unix" {
					dir, err := os.MkdirTemp("", "cs")
					if err != nil {
						return nil, nil, nil, err
					}
					defer os.RemoveAll(dir)
					ln, err = net.Listen("unix", filepath.Join(dir, "s"))
					if err != nil {
						return nil, nil, nil, err
					}
				} else {
					ln, err = net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						return nil, nil, nil, err
					}
				}
				defer ln.Close()
				a, err := net.Dial(network, ln.Addr().String())
				if err != nil {
					return nil, nil, nil, err
				}
				b, err := ln.Accept()
				if err != nil {
					return nil, nil, nil, err
				}
				c1, c2 = RawIO(a), RawIO(b)
				switch c1.(type) {
				case *rawConn:
					if network == "unix" {
						t.Fatal("a Unix socket not kept out of the poller")
					}
				case *quietConn:
				default:
					t.Fatal("not wrapped")
				}
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}
