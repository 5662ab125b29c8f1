//go:build linux

package nativepcsc_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// native is a Source on the real libpcsclite, talking to a private pcscd,
// served on a Unix socket in a directory only its owner can enter the way
// cardshare serves it: bridge.Serve checks each connection's opening and
// hands it to the Source (bridge.Config.Local, ServeOpened).
type native struct {
	p      *testenv.PCSCD
	src    *nativepcsc.Source
	Socket string
}

func startNative(t *testing.T) *native {
	t.Helper()
	p := testenv.StartPCSCD(t)
	scardtest.UseSocket(t, p.Socket)
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := nativepcsc.New(lib, &nativepcsc.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "pcscd.comm")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bridge.Serve(ctx, ln, src.Dial, &bridge.Config{Logger: log, Daemon: nativepcsc.Daemon, Local: src})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		src.Close()
		os.RemoveAll(dir)
	})
	return &native{p: p, src: src, Socket: sock}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestNativeHelloWorld(t *testing.T) {
	n := startNative(t)
	n.p.InsertCard(t)
	bin := testenv.BuildClient(t)
	out, err := testenv.RunClient(t, bin, n.Socket, "hello")
	if err != nil || !strings.Contains(out, "response: Hello world!") || !strings.Contains(out, "sw: 9000") {
		t.Fatalf("hello through the native backend: %q, %v", out, err)
	}
	out, err = testenv.RunClient(t, bin, n.Socket, "list")
	if err != nil || out != testenv.VPCDReader+"\n"+testenv.VPCDSecondReader+"\n" {
		t.Fatalf("list: %q, %v", out, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	scan, err := testenv.ClientCommand(ctx, "/usr/bin/pcsc_scan", n.Socket, "-r").CombinedOutput()
	if err != nil || !strings.Contains(string(scan), testenv.VPCDReader) {
		t.Fatalf("pcsc_scan -r: %q, %v", scan, err)
	}
}

// TestNativeSameAsPCSCD runs the same PC/SC calls against pcscd and
// through the native backend, and wants the same results: status,
// transactions, transmit with a short buffer, control (64 KiB in),
// attributes, reconnect, a 65,000-byte APDU, a transmit after disconnect.
func TestNativeSameAsPCSCD(t *testing.T) {
	n := startNative(t)
	n.p.InsertCard(t)
	direct, err := runGoClient(t, n.p.Socket, "calls")
	if err != nil {
		t.Fatalf("against pcscd: %v\n%s", err, direct)
	}
	through, err := runGoClient(t, n.Socket, "calls")
	if err != nil {
		t.Fatalf("through cardshare: %v\n%s", err, through)
	}
	if direct != through {
		t.Errorf("results differ\npcscd:\n%s\ncardshare:\n%s", direct, through)
	}
	if !strings.Contains(through, `"Hello world!\x90\x00"`) {
		t.Errorf("no hello world:\n%s", through)
	}
	t.Logf("through cardshare:\n%s", through)
}

func TestNativeTransactions(t *testing.T) {
	n := startNative(t)
	n.p.InsertCard(t)
	out, err := runGoClient(t, n.Socket, "transactions")
	if err != nil || !strings.Contains(out, "order: end 1, begin 2 <nil>") {
		t.Fatalf("transactions: %v\n%s", err, out)
	}
}

func TestNativeCancel(t *testing.T) {
	n := startNative(t)
	out, err := runGoClient(t, n.Socket, "cancel")
	if err != nil || !strings.Contains(out, "cancel: <nil>") || !strings.Contains(out, "wait: scard: SCARD_E_CANCELLED (0x80100002) fast true") {
		t.Fatalf("cancel: %v\n%s", err, out)
	}
}

// bgClient is the C client running in the background.
type bgClient struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan error
	mu   sync.Mutex
}

func startClient(t *testing.T, socket string, args ...string) *bgClient {
	t.Helper()
	c := &bgClient{done: make(chan error, 1)}
	c.cmd = testenv.ClientCommand(t.Context(), testenv.BuildClient(t), socket, args...)
	c.cmd.Stdout = &lockedWriter{&c.mu, &c.out}
	c.cmd.Stderr = c.cmd.Stdout
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	return c
}

func (c *bgClient) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *bgClient) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("client never printed %q: %q", s, c.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// A blocking wait through the native backend sees a card arrive and
// leave.
func TestNativeWaitInsertRemove(t *testing.T) {
	n := startNative(t)
	w := startClient(t, n.Socket, "wait", "30")
	w.waitFor(t, "waiting:")
	time.Sleep(300 * time.Millisecond)
	card := n.p.InsertCard(t)
	if err := <-w.done; err != nil {
		t.Fatalf("wait for insert: %v: %q", err, w.output())
	}
	if !strings.Contains(w.output(), "changed:") || !strings.Contains(w.output(), "PRESENT") {
		t.Errorf("insert: %q", w.output())
	}
	w = startClient(t, n.Socket, "wait", "30")
	w.waitFor(t, "waiting:")
	time.Sleep(300 * time.Millisecond)
	n.p.RemoveCard(t, card)
	if err := <-w.done; err != nil {
		t.Fatalf("wait for removal: %v: %q", err, w.output())
	}
	if !strings.Contains(w.output(), "changed:") || !strings.Contains(w.output(), "EMPTY") {
		t.Errorf("removal: %q", w.output())
	}
}

// Many clients at once: 100 that connect to the card and 100 waiting.
func TestNativeManyClients(t *testing.T) {
	n := startNative(t)
	card := n.p.InsertCard(t)
	var waiters []*bgClient
	for range 100 {
		waiters = append(waiters, startClient(t, n.Socket, "wait", "60"))
	}
	for _, w := range waiters {
		w.waitFor(t, "waiting:")
	}
	bin := testenv.BuildClient(t)
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	sem := make(chan struct{}, 25)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := testenv.RunClient(t, bin, n.Socket, "hello")
			if err != nil || !strings.Contains(out, "Hello world!") {
				errs <- out + " " + err.Error()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Every waiter has seen a change by the time the card is gone (the
	// connections changed the reader's sharing state already).
	n.p.RemoveCard(t, card)
	for _, w := range waiters {
		select {
		case err := <-w.done:
			if err != nil || !strings.Contains(w.output(), "changed:") {
				t.Errorf("waiter: %v: %q", err, w.output())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("a waiter still waits: %q", w.output())
		}
	}
}

// pcscd restarts under the native backend: the event loop re-establishes
// its context, and new guest connections work again.
func TestNativePCSCDRestart(t *testing.T) {
	n := startNative(t)
	n.p.InsertCard(t)
	bin := testenv.BuildClient(t)
	if out, err := testenv.RunClient(t, bin, n.Socket, "hello"); err != nil {
		t.Fatalf("before restart: %q, %v", out, err)
	}
	w := startClient(t, n.Socket, "wait", "60")
	w.waitFor(t, "waiting:")
	n.p.Restart(t)
	// The waiting guest sees its reader go (or fail) as pcscd goes.
	select {
	case err := <-w.done:
		t.Logf("a wait across the restart ended: %v: %q", err, w.output())
	case <-time.After(20 * time.Second):
		t.Fatalf("a wait across the restart never ended: %q", w.output())
	}
	n.p.InsertCard(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := testenv.RunClient(t, bin, n.Socket, "hello")
		if err == nil && strings.Contains(out, "Hello world!") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %q, %v", out, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Close ends every guest connection and the event loop, and leaves no
// goroutine or descriptor behind; nor does a guest that leaves mid-call.
func TestCloseLeavesNothing(t *testing.T) {
	before := testenv.Snapshot(t)
	f, src := startFake(t)
	f.Insert(fakeReader, fakeATR)
	var waiting []*raw
	for range 10 {
		r := dial(t, src)
		r.version(pcsc.V46)
		ctx := r.establish()
		if cs := r.connect(ctx, fakeReader); cs.RV != 0 {
			t.Fatalf("connect %+v", cs)
		}
		r.send(pcsc.CmdWaitReaderStateChange, nil, nil)
		waiting = append(waiting, r)
	}
	half := dial(t, src)
	half.Write([]byte{12, 0, 0, 0, 0x11, 0, 0}) // half a header
	src.Close()
	for _, r := range waiting {
		r.closed()
		r.Close()
	}
	half.Close()
	if n := f.Contexts(); n != 0 {
		t.Errorf("%d host contexts left after Close", n)
	}
	if _, err := src.Dial(t.Context()); !errors.Is(err, nativepcsc.ErrClosed) {
		t.Errorf("Dial after Close: %v", err)
	}
	testenv.CheckNoLeak(t, before)
}
