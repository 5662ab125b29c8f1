package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/cardshare/cardshare/relay/mux"
)

func TestParseVsock(t *testing.T) {
	tests := []struct {
		in        string
		cid, port uint32
		own       bool
		bad       bool
	}{
		{in: ":7743", port: 7743, own: true},
		{in: "2:7743", cid: 2, port: 7743},
		{in: "host:7743", cid: vsock.Host, port: 7743},
		{in: "local:1", cid: vsock.Local, port: 1},
		{in: "42:1024", cid: 42, port: 1024},
		{in: "7743", bad: true},
		{in: "x:7743", bad: true},
		{in: "2:", bad: true},
		{in: "2:99999999999", bad: true},
	}
	for _, tt := range tests {
		cid, own, port, err := parseVsock(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%q: no error", tt.in)
			}
			continue
		}
		if err != nil || cid != tt.cid || port != tt.port || own != tt.own {
			t.Errorf("%q: cid %d own %v port %d, %v; want %d %v %d", tt.in, cid, own, port, err, tt.cid, tt.own, tt.port)
		}
	}
	if _, err := DialAddr(context.Background(), "vsock://:7743"); err == nil {
		t.Error("dial without a CID: no error")
	}
}

// vsockLoopback returns a vsock listener and its loopback address, or skips
// the test when the kernel cannot connect to itself (no vsock_loopback
// module, or a guest kernel whose vsock reaches only its host).
func vsockLoopback(t *testing.T) (net.Listener, string) {
	t.Helper()
	if _, err := os.Stat("/dev/vsock"); err != nil {
		t.Skipf("no vsock here: %v", err)
	}
	ln, err := ListenAddr(context.Background(), "vsock://local:0")
	if err != nil {
		ln, err = ListenAddr(context.Background(), "vsock://:0")
	}
	if err != nil {
		t.Skipf("cannot listen on vsock: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := fmt.Sprintf("vsock://local:%d", ln.Addr().(*vsock.Addr).Port)

	// Probe: a loopback connect either works at once or, where nothing
	// routes CID 1, hangs until its timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := DialAddr(ctx, addr)
	if err != nil {
		t.Skipf("vsock loopback (CID 1) does not connect here (load vsock_loopback to run this test): %v", err)
	}
	c.Close()
	(<-accepted).Close()
	return ln, addr
}

// The relay over vsock: the same TLS, yamux and stream adapter as over TCP.
func TestVsockSession(t *testing.T) {
	ln, addr := vsockLoopback(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	a, err := DialAddr(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	t.Cleanup(func() { a.Close(); b.Close() })
	log := slog.New(slog.DiscardHandler)
	fast := &mux.Config{KeepaliveInterval: 100 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	g, err := mux.NewSession(a, true, fast, log)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mux.NewSession(b, false, fast, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); h.Close() })
	c1, err := mux.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	c1.Write([]byte("over vsock"))
	c1.(interface{ CloseWrite() error }).CloseWrite()
	c2, err := mux.Listener{Session: h}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c2)
	if err != nil || string(got) != "over vsock" {
		t.Fatalf("read %q, %v", got, err)
	}
	b.Close()
	if _, err := c1.Read(make([]byte, 1)); !errors.Is(err, mux.ErrSessionLost) && err != io.EOF {
		t.Errorf("read after the peer closed: %v", err)
	}
}
