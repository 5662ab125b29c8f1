//go:build linux

package ccid

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/vscard"
)

// Nothing is left behind: QEMU going away in the middle of a command
// stream, then Attach cancelled.
func TestNothingLeftBehind(t *testing.T) {
	before := testenv.Snapshot(t)
	h := newFakeHost()
	h.addReader("R", atrT0)
	path := filepath.Join(sockDir(t), "ccid.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Attach(ctx, h, &Config{Chardevs: []Endpoint{{Network: "unix", Address: path, Listen: true}},
			RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	}()
	for range 3 {
		var conn net.Conn
		var err error
		for range 100 {
			if conn, err = net.Dial("unix", path); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		q := newFakeQEMU(t, conn)
		q.open()
		q.expect(vscard.ReaderAdd)
		q.expect(vscard.ATR)
		for range 5 { // commands QEMU never reads the answers of
			q.send(vscard.APDU, hello)
		}
		conn.Close()
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Attach: %v", err)
	}
	testenv.CheckNoLeak(t, before)
}
