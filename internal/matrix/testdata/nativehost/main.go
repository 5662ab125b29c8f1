// Command nativehost is cardshare's host side on the native backend, for
// TestVersionMatrixNative: hostpcsc.Open with the native backend (nativepcsc
// over internal/scard, which loads this system's libpcsclite.so.1 with
// purego) under bridge.Serve (the opening checked, then the connection handed to
// the daemon end: bridge.Config.Local), as `cardshare
// expose --backend native` runs them, serving guests on a Unix socket. The
// test builds it with CGO_ENABLED=0, as cardshare is built, and runs it in
// each Debian release's chroot, where PCSCLITE_CSOCK_NAME points its
// libpcsclite at that release's pcscd.
//
// usage: nativehost SOCKET
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: nativehost SOCKET")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "nativehost: error:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	src, d, err := hostpcsc.Open(ctx, hostpcsc.Native, "", log)
	if err != nil {
		return err
	}
	defer hostpcsc.Close(src)
	lib, err := scard.Open() // the library src holds (Open loads it once)
	if err != nil {
		return err
	}
	fmt.Printf("library %s, features %+v, serving protocol %s\n", lib, lib.Features(), d.Version)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return err
	}
	fmt.Println("serving on", path)
	conf := &bridge.Config{Daemon: d, Logger: log}
	if l, ok := src.(bridge.Local); ok {
		conf.Local = l // as expose runs it: the daemon end serves each checked connection
	}
	err = bridge.Serve(ctx, ln, src.Dial, conf)
	if ctx.Err() != nil {
		return nil // stopped
	}
	return err
}
