// Command gorelay is the bare Go relay that BenchmarkRelay measures next to
// socat and cardshare's relay: it accepts on one address and copies each
// connection to a new connection to another, both ways, with io.Copy, as the
// simplest Go program doing socat's job would. No TLS, no multiplexing.
//
// usage: gorelay LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: gorelay LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS")
		os.Exit(2)
	}
	ln, err := net.Listen(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gorelay:", err)
			os.Exit(1)
		}
		go relay(c, os.Args[3], os.Args[4])
	}
}

func relay(c net.Conn, network, addr string) {
	defer c.Close()
	d, err := net.Dial(network, addr)
	if err != nil {
		return
	}
	defer d.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(d, c)
		d.(interface{ CloseWrite() error }).CloseWrite()
		close(done)
	}()
	io.Copy(c, d)
	c.(interface{ CloseWrite() error }).CloseWrite()
	<-done
}
