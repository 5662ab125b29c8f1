// Command hostserve is the host side of cardshare's socket path without
// SSH, for BenchmarkNative: bridge.Serve on a guest socket, with the host's
// PC/SC reached either through the pcscd socket (-backend socket) or
// through the native backend, internal/nativepcsc over libpcsclite
// (-backend native, which reads PCSCLITE_CSOCK_NAME like any libpcsclite
// client), which serves each guest connection itself as cardshare does
// (bridge.Config.Local). -backend native-pair serves it through the
// native Source's Dial instead, a socket pair whose other end the daemon
// end serves: how every native connection was served before Local. It
// runs until stdin closes; each line "mem" on stdin prints its heap and
// stacks in use after a GC, and its RSS, in bytes: "mem HEAP RSS".
//
// usage: hostserve -backend socket|native|native-pair GUEST-SOCKET PCSCD-SOCKET
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

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
		fmt.Fprintln(os.Stderr, "usage: hostserve -backend socket|native|native-pair GUEST-SOCKET PCSCD-SOCKET")
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
	if backend == "native" || backend == "native-pair" {
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
		if backend == "native" {
			cfg.Local = src
		}
	}
	ln, err := net.Listen("unix", guest)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "mem" {
				fmt.Println(mem())
			}
		}
		cancel()
	}()
	fmt.Println("serving")
	return bridge.Serve(ctx, ln, dial, &cfg)
}

// mem is the "mem HEAP RSS" line: heap and stacks in use after a GC, and
// the process's resident set, in bytes.
func mem() string {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	var rss uint64
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			rss = pages * uint64(os.Getpagesize())
		}
	}
	return fmt.Sprintf("mem %d %d", m.HeapInuse+m.StackInuse, rss)
}
