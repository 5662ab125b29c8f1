package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/logtest"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cardshare": func() {
			// Every log line of every test run keeps one key once
			// (issue 17 item 3): a repeat makes the command exit 3.
			var mu sync.Mutex
			var dups []string
			cmdutil.CheckLog = func(h slog.Handler) slog.Handler {
				return logtest.Handler(h, func(msg, key string) {
					mu.Lock()
					dups = append(dups, fmt.Sprintf("log line %q repeats the key %q", msg, key))
					mu.Unlock()
				})
			}
			// As main does, so that tests can stop it with SIGINT.
			cmdutil.CatchHangup()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			mu.Lock()
			for _, d := range dups {
				fmt.Fprintf(os.Stderr, "cardshare: test: %s\n", d)
				code = 3
			}
			mu.Unlock()
			os.Exit(code)
		},
		"notqemu": func() { os.Exit(notQEMUMain()) },
	})
}

// TestScript runs the CLI scripts in testdata/*.txtar: help, usage errors
// and failures that must end in one error line and a hint.
func TestScript(t *testing.T) {
	// A fake pcscd that answers CMD_VERSION, for scripts that must get past
	// the host check: $FAKEPCSCD.
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	testscript.Run(t, testscript.Params{Dir: "testdata", Setup: func(e *testscript.Env) error {
		e.Setenv("FAKEPCSCD", fake.Socket)
		return nil
	}})
}
