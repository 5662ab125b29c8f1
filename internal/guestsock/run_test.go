package guestsock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
)

// TestRunOutputCapped: a guest whose shell prints without end stops the
// script with ErrOutputTooLarge instead of growing the host process until
// the caller's deadline (issue 13, item 5); the connection still serves the
// next script.
func TestRunOutputCapped(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := Run(ctx, c, "while :; do echo cardshare cardshare cardshare; done\n")
	if !errors.Is(err, ErrOutputTooLarge) || out != nil {
		t.Fatalf("endless output: %d bytes, %v; want ErrOutputTooLarge", len(out), err)
	}
	t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
	out, err = Run(ctx, c, "printf '%s\\n' \"$x\"\n", "x", "still there")
	if err != nil || string(out) != "still there\n" {
		t.Fatalf("next script: %q, %v", out, err)
	}
}
