//go:build linux

package bridge_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// Through the byte relay, which frames whole messages, the real
// libpcsclite and pcscd: a blocking SCardGetStatusChange ends on the card
// event (the WAIT registration and its signal), one that times out ends
// with STOP_WAITING, and transmits go on afterwards on new connections.
func TestFramedRelayRealPCSCD(t *testing.T) {
	p := testenv.StartPCSCD(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := pcsc.Probe(ctx, p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "guest.comm")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: p.Socket}.Dial, &bridge.Config{Daemon: d}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	bin := testenv.BuildClient(t)

	cmd := testenv.ClientCommand(t.Context(), bin, sock, "wait", "30")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "waiting: ") {
		t.Fatalf("client did not start waiting: %q, %v; %s", line, err, &stderr)
	}
	time.Sleep(200 * time.Millisecond) // registered in pcscd
	p.InsertCard(t)
	waited := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		cmd.Wait()
		waited <- string(b)
	}()
	select {
	case got := <-waited:
		if !strings.HasPrefix(got, "changed: ") {
			t.Fatalf("wait ended with %q; %s", got, &stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the card event did not reach the waiting client")
	}

	start := time.Now()
	if _, err := testenv.RunClient(t, bin, sock, "wait", "1"); err == nil || !strings.Contains(err.Error(), "no change in 1 s") {
		t.Fatalf("wait without a change: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 1 s wait took %v", d)
	}
	if got, err := testenv.RunClient(t, bin, sock, "hello"); err != nil || !strings.Contains(got, "Hello world!") {
		t.Fatalf("hello after the waits: %q, %v", got, err)
	}
	if _, err := testenv.RunClient(t, bin, sock, "bench", "200"); err != nil {
		t.Fatalf("bench: %v", err)
	}
}
