// Command cardshare lets guest virtual machines use the smart card readers
// of their host, by forwarding the host's pcscd socket into each guest.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
)

func main() {
	cmdutil.CatchHangup()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
