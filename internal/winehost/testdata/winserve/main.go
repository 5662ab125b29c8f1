// Command winserve serves the pcsc-lite protocol from the host's native
// PC/SC on a TCP address, for TestWineHost: bridge.Serve (with its protocol
// stage, as cardshare runs it) over Source.Dial of internal/nativepcsc
// over internal/scard, on Windows and under Wine, where there is no
// AF_UNIX.
//
// usage: winserve ADDRESS
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: winserve ADDRESS")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "winserve: error:", err)
		var le *scard.LoadError
		if errors.As(err, &le) {
			fmt.Fprintln(os.Stderr, "winserve: hint:", le.Hint)
		}
		os.Exit(1)
	}
}

func run(addr string) error {
	lib, err := scard.Open()
	if err != nil {
		return err
	}
	ctx, err := lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		return fmt.Errorf("establish: %w", err)
	}
	readers, err := lib.ListReaders(ctx)
	lib.ReleaseContext(ctx)
	fmt.Printf("library %s, features %+v, readers %q, %v\n", lib, lib.Features(), readers, err)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := nativepcsc.New(lib, &nativepcsc.Config{Logger: log})
	if err != nil {
		return err
	}
	defer src.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("serving on", ln.Addr())
	return bridge.Serve(context.Background(), ln, src.Dial, &bridge.Config{Daemon: nativepcsc.Daemon, Logger: log, Audit: true})
}
