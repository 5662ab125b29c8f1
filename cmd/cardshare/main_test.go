package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cardshare": func() {
			// As main does, so that tests can stop it with SIGINT.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		},
		"notqemu": func() { os.Exit(notQEMUMain()) },
	})
}

// TestScript runs the CLI scripts in testdata/*.txtar: help, usage errors
// and failures that must end in one error line and a hint.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}
