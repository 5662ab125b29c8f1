package doctor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQEMU(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "ccid.sock")
	var got []Result
	cfg := &Config{Report: func(_ string, r Result) { got = append(got, r) }}
	noVirsh := func(context.Context, string, string, ...string) ([]byte, error) { return nil, errors.New("no virsh") }

	if s := QEMU(t.Context(), cfg, noVirsh, "unix:"+sock, false); s.Warned != 1 {
		t.Errorf("no socket: %+v %+v", s, got)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got = nil
	if s := QEMU(t.Context(), cfg, noVirsh, "unix:"+sock, false); s != (Summary{}) || got[0].Status != OK {
		t.Errorf("QEMU listening: %+v %+v", s, got)
	}
	got = nil
	if s := QEMU(t.Context(), cfg, noVirsh, "win11", false); s.Failed != 1 || got[0].Status != Fail {
		t.Errorf("unknown domain: %+v %+v", s, got)
	}
	xml := func(context.Context, string, string, ...string) ([]byte, error) {
		return []byte("<domain><devices><smartcard mode='passthrough' type='unix'><source mode='bind' path='" + sock + "'/></smartcard></devices></domain>"), nil
	}
	got = nil
	if s := QEMU(t.Context(), cfg, xml, "win11", false); s != (Summary{}) || len(got) != 2 {
		t.Errorf("domain: %+v %+v", s, got)
	}
	empty := func(context.Context, string, string, ...string) ([]byte, error) { return []byte("<domain/>"), nil }
	got = nil
	if s := QEMU(t.Context(), cfg, empty, "win11", false); s.Failed != 1 || !strings.Contains(got[0].Msg, "<smartcard mode='passthrough' type='unix'>") {
		t.Errorf("no smartcard: %+v %+v", s, got)
	}
}
