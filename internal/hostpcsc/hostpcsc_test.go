package hostpcsc_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

func TestSocket(t *testing.T) {
	want := pcsc.Daemon{Version: pcsc.V45, Lenient: true}
	fake := pcsctest.Start(t, want)
	var src hostpcsc.Source = hostpcsc.Socket{Path: fake.Socket}
	if got := src.String(); got != "pcscd socket "+fake.Socket {
		t.Errorf("String() = %q", got)
	}
	d, err := src.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != want.Version {
		t.Errorf("Probe: %v, want %v", d, want)
	}
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := (hostpcsc.Socket{}).String(); got != "pcscd socket "+pcsc.DefaultSocket {
		t.Errorf("zero Socket: %q", got)
	}
}

func TestNew(t *testing.T) {
	src, err := hostpcsc.New(hostpcsc.PCSCDSocket, "/tmp/x.comm", nil)
	if err != nil || src != (hostpcsc.Socket{Path: "/tmp/x.comm"}) {
		t.Errorf("New(socket) = %v, %v; want the socket", src, err)
	}
	if hostpcsc.BackendOf(src) != hostpcsc.PCSCDSocket {
		t.Errorf("BackendOf(socket) = %q", hostpcsc.BackendOf(src))
	}
	if err := hostpcsc.Close(src); err != nil {
		t.Errorf("Close(socket): %v", err)
	}
	if _, err := hostpcsc.New("pcscd", "", nil); !errors.Is(err, hostpcsc.ErrUnknownBackend) {
		t.Errorf("New(pcscd): %v", err)
	}
}
