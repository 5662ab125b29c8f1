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
	for _, b := range []string{"", hostpcsc.Auto, hostpcsc.PCSCDSocket} {
		src, err := hostpcsc.New(b, "/tmp/x.comm")
		if err != nil || src != (hostpcsc.Socket{Path: "/tmp/x.comm"}) {
			t.Errorf("New(%q) = %v, %v; want the socket", b, src, err)
		}
	}
	if _, err := hostpcsc.New(hostpcsc.Native, ""); !errors.Is(err, hostpcsc.ErrNoNative) {
		t.Errorf("New(native): %v", err)
	}
	if _, err := hostpcsc.New("pcscd", ""); !errors.Is(err, hostpcsc.ErrUnknownBackend) {
		t.Errorf("New(pcscd): %v", err)
	}
}
