// Command gorelay is the bare Go relay that BenchmarkRelay measures next to
// socat and cardshare's relay: it accepts on one address and copies each
// connection to a new connection to another, both ways, with io.Copy, as the
// simplest Go program doing socat's job would. No TLS, no multiplexing.
//
// With -rawio it reads and writes through relay.RawIO, as cardshare's relay
// does, so that the two differ only in TLS and yamux.
//
// usage: gorelay [-rawio] LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cardshare/cardshare/relay"
)

func main() {
	rawIO := flag.Bool("rawio", false, "read and write through relay.RawIO")
	flag.Parse()
	args := flag.Args()
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gorelay [-rawio] LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS")
		os.Exit(2)
	}
	wrap := func(c net.Conn) net.Conn { return c }
	if *rawIO {
		wrap = relay.RawIO
	}
	ln, err := net.Listen(args[0], args[1])
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
		go copyBoth(c, args[2], args[3], wrap)
	}
}

func copyBoth(c net.Conn, network, addr string, wrap func(net.Conn) net.Conn) {
	defer c.Close()
	d, err := net.Dial(network, addr)
	if err != nil {
		return
	}
	defer d.Close()
	rc, rd := wrap(c), wrap(d)
	done := make(chan struct{})
	go func() {
		io.Copy(rd, rc)
		d.(interface{ CloseWrite() error }).CloseWrite()
		close(done)
	}()
	io.Copy(rc, rd)
	c.(interface{ CloseWrite() error }).CloseWrite()
	<-done
}
