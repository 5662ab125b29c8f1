//go:build unix

package hostpcsc_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
)

// serveOnce serves a Unix socket whose connections are spliced to
// src.Dial, as bridge.Serve does without its protocol stage (hostpcsc
// must not import the core), until the test ends.
func serveOnce(t *testing.T, src hostpcsc.Source, _ pcsc.Daemon) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "g.comm")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			g, err := ln.Accept()
			if err != nil {
				return
			}
			h, err := src.Dial(context.Background())
			if err != nil {
				g.Close()
				continue
			}
			wg.Go(func() { io.Copy(h, g); h.Close() })
			wg.Go(func() { io.Copy(g, h); g.Close() })
		}
	})
	return sock
}
