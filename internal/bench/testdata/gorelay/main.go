// Command gorelay is the bare Go relay that BenchmarkRelay measures next to
// socat and cardshare's relay: it accepts on one address and copies each
// connection to a new connection to another, both ways, with io.Copy, as the
// simplest Go program doing socat's job would. No TLS, no multiplexing.
//
// With -rawio it reads and writes through rawio.RawIO, as cardshare's relay
// does, so that the two differ only in TLS and yamux. With -tls as well the
// TCP leg is TLS 1.3 (a throwaway key, not verified: this measures cost, not
// security), so that the two differ only in yamux.
//
// usage: gorelay [-rawio] [-tls] LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/cardshare/cardshare/internal/rawio"
)

func main() {
	rawIO := flag.Bool("rawio", false, "read and write through rawio.RawIO")
	useTLS := flag.Bool("tls", false, "TLS 1.3 on the TCP leg")
	flag.Parse()
	args := flag.Args()
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gorelay [-rawio] [-tls] LISTEN-NETWORK LISTEN-ADDRESS DIAL-NETWORK DIAL-ADDRESS")
		os.Exit(2)
	}
	wrap := func(c net.Conn) net.Conn { return c }
	if *rawIO {
		wrap = rawio.RawIO
	}
	if *useTLS {
		cfg, err := tlsConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gorelay:", err)
			os.Exit(1)
		}
		inner, server := wrap, args[0] == "tcp"
		wrap = func(c net.Conn) net.Conn {
			if _, ok := c.(*net.TCPConn); !ok {
				return inner(c)
			}
			if server {
				return tls.Server(inner(c), cfg)
			}
			return tls.Client(inner(c), cfg)
		}
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

// tlsConfig is TLS 1.3 with a throwaway Ed25519 certificate that neither end
// verifies.
func tlsConfig() (*tls.Config, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		InsecureSkipVerify: true,
	}, nil
}
