// Command hostserve is the host side of cardshare's socket path without
// SSH, for BenchmarkNative: bridge.Serve on a guest socket, with the host's
// PC/SC reached either through the pcscd socket (-backend socket) or
// through the native backend, internal/nativepcsc over libpcsclite
// (-backend native, which reads PCSCLITE_CSOCK_NAME like any libpcsclite
// client). It runs until stdin closes.
//
// usage: hostserve -backend socket|native GUEST-SOCKET PCSCD-SOCKET
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

func main() {
	backend := flag.String("backend", "socket", "socket or native")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: hostserve -backend socket|native GUEST-SOCKET PCSCD-SOCKET")
		os.Exit(2)
	}
	if err := run(*backend, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintln(os.Stderr, "hostserve:", err)
		os.Exit(1)
	}
}

func run(backend, guest, pcscd string) error {
	dial := hostpcsc.Socket{Path: pcscd}.Dial
	cfg := bridge.Config{Daemon: pcsc.Daemon{Version: pcsc.V44}}
	if backend == "native" {
		os.Setenv("PCSCLITE_CSOCK_NAME", pcscd)
		lib, err := scard.Open()
		if err != nil {
			return err
		}
		src, err := nativepcsc.New(lib, nil)
		if err != nil {
			return err
		}
		defer src.Close()
		dial, cfg.Daemon = src.Dial, nativepcsc.Daemon
	}
	ln, err := net.Listen("unix", guest)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	fmt.Println("serving")
	return bridge.Serve(ctx, ln, dial, &cfg)
}
