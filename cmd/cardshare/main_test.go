package main

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cardshare": func() {
			os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		},
	})
}

// TestScript runs the CLI scripts in testdata/*.txtar: help, usage errors
// and failures that must end in one error line and a hint.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata"})
}
