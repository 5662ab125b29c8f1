//go:build linux

package nativepcsc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/testenv"
)

// The tests re-run their own binary as a PC/SC application on the real
// libpcsclite (through package scard), pointed at a socket by
// PCSCLITE_CSOCK_NAME: libpcsclite keeps the first socket it uses for the
// life of the process, and the test process's own libpcsclite is the
// daemon end's host library. Each mode prints one line per result, so
// that a run through cardshare can be compared with a run against pcscd
// itself.

const clientEnv = "CARDSHARE_NATIVEPCSC_CLIENT"

func TestMain(m *testing.M) {
	if mode := os.Getenv(clientEnv); mode != "" {
		os.Exit(clientMain(mode))
	}
	os.Exit(m.Run())
}

// runGoClient runs the client mode against socket and returns its output.
func runGoClient(t *testing.T, socket, mode string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := testenv.ClientCommand(ctx, os.Args[0], socket)
	cmd.Env = append(cmd.Env, clientEnv+"="+mode)
	out, err := cmd.Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		err = fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return string(out), err
}

var (
	selectAPDU = []byte{0x00, 0xA4, 0x04, 0x00, 0x0A, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0C, 0x06, 0x01}
	helloAPDU  = []byte{0x00, 0x00, 0x00, 0x00}
)

func clientMain(mode string) int {
	if sock, ok := strings.CutPrefix(mode, "serve "); ok {
		return serveMain(sock)
	}
	lib, err := scard.Open()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	ctx, err := lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		fmt.Fprintln(os.Stderr, "establish:", err)
		return 1
	}
	defer lib.ReleaseContext(ctx)
	readers, err := lib.ListReaders(ctx)
	out("readers: %q %v", readers, err)
	if len(readers) == 0 {
		return 1
	}
	reader := readers[0]
	connect := func(c scard.Context) (scard.Card, uint32) {
		card, proto, err := lib.Connect(c, reader, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1)
		out("connect: proto %d %v", proto, err)
		return card, proto
	}
	transmit := func(card scard.Card, proto uint32, apdu []byte, size int) {
		recv := make([]byte, size)
		n, _, err := lib.Transmit(card, scard.IORequest{Protocol: proto}, apdu, recv)
		if err != nil {
			out("transmit %d bytes: n %d %v", len(apdu), n, err)
			return
		}
		out("transmit %d bytes: %q", len(apdu), recv[:n])
	}
	switch mode {
	case "calls":
		card, proto := connect(ctx)
		st, err := lib.Status(card)
		out("status: %q state %#x proto %d atr % x %v", st.Reader, st.State&0xFFFF, st.Protocol, st.ATR, err)
		out("begin: %v", lib.BeginTransaction(card))
		transmit(card, proto, selectAPDU, 258)
		transmit(card, proto, helloAPDU, 258)
		transmit(card, proto, helloAPDU, 2) // too small
		out("end: %v", lib.EndTransaction(card, scard.DispositionLeave))
		n, err := lib.Control(card, scard.FeatureRequest, nil, make([]byte, 256))
		out("control features: %d %v", n, err)
		n, err = lib.Control(card, scard.FeatureRequest, make([]byte, 65000), make([]byte, 256))
		out("control 65000 bytes: %d %v", n, err)
		for _, id := range []uint32{0x00090303, 0x00010100, 0x00010102, 0x7A007} {
			buf := make([]byte, 264)
			n, err := lib.GetAttrib(card, id, buf)
			if err != nil {
				n = 0
			}
			out("getattrib %#x: % x %v", id, buf[:min(n, len(buf))], err)
		}
		out("setattrib: %v", lib.SetAttrib(card, 0x7A007, []byte{1}))
		p, err := lib.Reconnect(card, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1, scard.DispositionReset)
		out("reconnect: %d %v", p, err)
		transmit(card, proto, selectAPDU, 258)
		// An extended APDU of 65,000 bytes: the test card answers a
		// status word for the length it does not support.
		big := make([]byte, 7+65000)
		big[5], big[6] = 0xFD, 0xE8
		for i := range big[7:] {
			big[7+i] = byte(i)
		}
		transmit(card, proto, big, 258)
		out("disconnect: %v", lib.Disconnect(card, scard.DispositionLeave))
		out("transmit after disconnect: %v", errOnly(lib.Transmit(card, scard.IORequest{Protocol: proto}, helloAPDU, make([]byte, 8))))
	case "transactions":
		ctx2, err := lib.EstablishContext(scard.ScopeSystem)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer lib.ReleaseContext(ctx2)
		card1, _ := connect(ctx)
		card2, _ := connect(ctx2)
		out("begin 1: %v", lib.BeginTransaction(card1))
		var mu sync.Mutex
		var order []string
		done := make(chan struct{})
		go func() {
			err := lib.BeginTransaction(card2)
			mu.Lock()
			order = append(order, fmt.Sprintf("begin 2 %v", err))
			mu.Unlock()
			close(done)
		}()
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		order = append(order, "end 1")
		mu.Unlock()
		out("end 1: %v", lib.EndTransaction(card1, scard.DispositionLeave))
		<-done
		out("order: %s", strings.Join(order, ", "))
		out("end 2: %v", lib.EndTransaction(card2, scard.DispositionLeave))
	case "cancel":
		states := []scard.ReaderState{{Reader: reader}}
		if err := lib.GetStatusChange(ctx, 0, states); err != nil {
			out("first wait: %v", err)
		}
		states[0].CurrentState = states[0].EventState
		done := make(chan error, 1)
		go func() { done <- lib.GetStatusChange(ctx, 30*time.Second, states) }()
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		out("cancel: %v", lib.Cancel(ctx))
		err := <-done
		out("wait: %v fast %v", err, time.Since(start) < 5*time.Second)
	case "hash":
		// Many round trips, each response hashed: for concurrency tests.
		card, proto := connect(ctx)
		h := sha256.New()
		recv := make([]byte, 258)
		for range 20 {
			n, _, err := lib.Transmit(card, scard.IORequest{Protocol: proto}, selectAPDU, recv)
			if err != nil {
				out("transmit: %v", err)
				return 1
			}
			h.Write(recv[:n])
		}
		out("hash: %x", h.Sum(nil)[:8])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 2
	}
	return 0
}

func errOnly(_ int, _ uint32, err error) error { return err }

// serveMain serves the daemon end on socket until stdin closes: the
// daemon end in a process of its own, without the test's virtual card.
func serveMain(socket string) int {
	lib, err := scard.Open()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	src, err := nativepcsc.New(lib, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	fmt.Println("serving")
	src.Serve(ctx, ln)
	src.Close()
	return 0
}
