package cmdutil

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// SIGHUP's default action ends a process at once, without the cleanup that
// SIGINT and SIGTERM get (guest sockets, relay.sock, open pcscd
// connections), and closing a terminal sends it. So every long-running
// command handles it: up and relay serve reload; expose, relay agent and
// relay join stop as on Ctrl-C, with a log line.

// CatchHangup routes SIGHUP away from its default action for the whole
// process, before a command has set its own handler: main calls it first.
// A hangup that arrives then is dropped.
func CatchHangup() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
}

// OnHangup calls fn on every SIGHUP until stop is called.
func OnHangup(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// HangupStops returns a context that SIGHUP cancels, after a log line, as
// Ctrl-C would: what was set up is cleaned up on the way out.
func HangupStops(ctx context.Context, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stopHup := OnHangup(func() {
		log.Info("SIGHUP: stopping, as on Ctrl-C (nothing to reload here)")
		cancel()
	})
	return ctx, func() {
		stopHup()
		cancel()
	}
}
