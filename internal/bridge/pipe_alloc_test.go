//go:build !race && unix

package bridge

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// socketPair returns the two ends of a connected Unix stream socket.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var c [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c[i].Close() })
	}
	return c[0], c[1]
}

// Relaying a transmit round trip allocates nothing, after an extended APDU
// as before it. (The race detector allocates on its own.)
func TestPipeZeroAllocs(t *testing.T) {
	client, guestEnd := socketPair(t)
	hostEnd, daemon := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Pipe(ctx, guestEnd, hostEnd, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Pipe: %v", err)
		}
	}()

	// The messages of one SCardTransmit of a 5-byte APDU, and of one of
	// an extended APDU.
	req, reply := make([]byte, 8+32+5), make([]byte, 32+14)
	ext := make([]byte, 8+32+65536)
	got := make([]byte, len(ext))
	roundTrip := func(req []byte) {
		if _, err := client.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(daemon, got[:len(req)]); err != nil {
			t.Fatal(err)
		}
		if _, err := daemon.Write(reply); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, got[:len(reply)]); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(req) // takes the buffers
	if n := testing.AllocsPerRun(500, func() { roundTrip(req) }); n > 0.01 {
		t.Errorf("%.2f allocations per transmit", n)
	}
	roundTrip(ext)
	if n := testing.AllocsPerRun(500, func() { roundTrip(req) }); n > 0.01 {
		t.Errorf("%.2f allocations per transmit after an extended APDU", n)
	}
}

// Whole-message forwarding allocates nothing per transmit either, after
// an extended APDU as before it, and holds nothing it should not: the
// round trips here would stall on a held reply.
func TestFramedPipeZeroAllocs(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: pcsc.DefaultSlots, hold: time.Minute})
	got := make([]byte, 8+pcsc.TransmitSize+65536)
	roundTrip := func(n int) {
		req, rep := transmit(n, 14)
		for _, p := range req {
			if _, err := e.client.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := io.ReadFull(e.daemon, got[:8+pcsc.TransmitSize+n]); err != nil {
			t.Fatal(err)
		}
		for _, p := range rep {
			if _, err := e.daemon.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := io.ReadFull(e.client, got[:pcsc.TransmitSize+14]); err != nil {
			t.Fatal(err)
		}
	}
	// The messages are made outside the measured function.
	req, rep := transmit(5, 14)
	small := func() {
		for _, p := range req {
			e.client.Write(p)
		}
		io.ReadFull(e.daemon, got[:8+pcsc.TransmitSize+5])
		for _, p := range rep {
			e.daemon.Write(p)
		}
		io.ReadFull(e.client, got[:pcsc.TransmitSize+14])
	}
	roundTrip(5)
	if n := testing.AllocsPerRun(500, small); n > 0.01 {
		t.Errorf("%.2f allocations per transmit", n)
	}
	roundTrip(65536)
	if n := testing.AllocsPerRun(500, small); n > 0.01 {
		t.Errorf("%.2f allocations per transmit after an extended APDU", n)
	}
}
