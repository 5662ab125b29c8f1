package pcsc_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Vectors captured from real daemons (pcscd 1.9.9 and 2.5.1).
func TestReadOpening(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want pcsc.Opening
		err  error
	}{
		{"4.4", "0c000000 11000000 | 04000000 04000000 00000000", pcsc.Opening{Command: pcsc.CmdVersion, Version: pcsc.V44}, nil},
		{"4.5", "0c000000 11000000 | 04000000 05000000 00000000", pcsc.Opening{Command: pcsc.CmdVersion, Version: pcsc.V45}, nil},
		{"4.6", "0c000000 11000000 | 04000000 06000000 00000000", pcsc.Opening{Command: pcsc.CmdVersion, Version: pcsc.V46}, nil},
		{"cancel", "08000000 0d000000 | 75314063 00000000", pcsc.Opening{Command: pcsc.CmdCancel}, nil},
		{"wrong length", "10000000 11000000 | 04000000 04000000 00000000 00000000", pcsc.Opening{}, pcsc.ErrBadOpening},
		{"establish first", "0c000000 01000000 | 02000000 00000000 00000000", pcsc.Opening{}, pcsc.ErrBadOpening},
		{"huge length", "ffffffff 11000000", pcsc.Opening{}, pcsc.ErrBadOpening},
		{"big endian", "0000000c 00000011 | 00000004 00000004 00000000", pcsc.Opening{}, pcsc.ErrBadOpening},
		{"short header", "0c0000", pcsc.Opening{}, io.ErrUnexpectedEOF},
		{"short body", "0c000000 11000000 | 04000000", pcsc.Opening{}, io.ErrUnexpectedEOF},
		{"empty", "", pcsc.Opening{}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			var buf [pcsc.OpeningMax]byte
			got, raw, err := pcsc.ReadOpening(bytes.NewReader(in), &buf)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if !bytes.Equal(raw, in) {
				t.Errorf("raw = %x, want %x", raw, in)
			}
		})
	}
}

func TestVersionReply(t *testing.T) {
	var buf [12]byte
	r, err := pcsc.ReadVersionReply(bytes.NewReader(unhex(t, "04000000 05000000 1e001080")), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != pcsc.V45 || r.Accepted() || r.RV != pcsc.ReturnServiceStopped {
		t.Errorf("got %+v", r)
	}
	if got := pcsc.AppendVersionReply(nil, r); !bytes.Equal(got, buf[:]) {
		t.Errorf("round trip: %x", got)
	}
	if got, want := pcsc.AppendVersionRequest(nil, pcsc.V44), unhex(t, "0c000000 11000000 04000000 04000000 00000000"); !bytes.Equal(got, want) {
		t.Errorf("request = %x, want %x", got, want)
	}
}

func TestRefusal(t *testing.T) {
	var buf [pcsc.OpeningMax]byte
	o, raw, err := pcsc.ReadOpening(bytes.NewReader(unhex(t, "08000000 0d000000 | 75314063 00000000")), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService), unhex(t, "75314063 1d001080"); !bytes.Equal(got, want) {
		t.Errorf("cancel refusal = %x, want %x", got, want)
	}
	o, raw, _ = pcsc.ReadOpening(bytes.NewReader(unhex(t, "0c000000 11000000 04000000 04000000 00000000")), &buf)
	if got, want := pcsc.AppendRefusal(nil, o, raw, pcsc.ReturnNoService), unhex(t, "04000000 04000000 1d001080"); !bytes.Equal(got, want) {
		t.Errorf("version refusal = %x, want %x", got, want)
	}
}

// Which daemon accepts the first CMD_VERSION of each client (before any
// fallback): pcsc-lite 2.2.3 src/winscard_svc.c:387-418, 2.4.1
// src/winscard_svc.c:389-425, 2.5.1 src/winscard_svc.c:393-436.
func TestAccepts(t *testing.T) {
	d44 := pcsc.Daemon{Version: pcsc.V44}
	d45 := pcsc.Daemon{Version: pcsc.V45}
	d241 := pcsc.Daemon{Version: pcsc.V45, Lenient: true}
	d46 := pcsc.Daemon{Version: pcsc.V46, Lenient: true}
	tests := []struct {
		d      pcsc.Daemon
		client pcsc.Version
		want   bool
	}{
		{d44, pcsc.V44, true}, {d44, pcsc.V45, false}, {d44, pcsc.V46, false}, {d44, pcsc.V43, false},
		{d45, pcsc.V44, false}, {d45, pcsc.V45, true}, {d45, pcsc.V46, false},
		{d241, pcsc.V43, false}, {d241, pcsc.V44, true}, {d241, pcsc.V45, true}, {d241, pcsc.V46, true},
		{d46, pcsc.V43, false}, {d46, pcsc.V44, true}, {d46, pcsc.V45, true}, {d46, pcsc.V46, true}, {d46, pcsc.Version{4, 7}, false},
	}
	for _, tt := range tests {
		if got := tt.d.Accepts(tt.client); got != tt.want {
			t.Errorf("%v accepts %v = %v, want %v", tt.d, tt.client, got, tt.want)
		}
	}
}

func TestMismatchMessage(t *testing.T) {
	m := &pcsc.Mismatch{Client: pcsc.V44, Daemon: pcsc.Daemon{Version: pcsc.V45}}
	for _, want := range []string{"4.4", "1.8.24–2.2.3", "4.5 strict", "2.3.0–2.4.0", "Service was stopped"} {
		if !strings.Contains(m.Error(), want) {
			t.Errorf("error %q lacks %q", m.Error(), want)
		}
	}
	if !strings.Contains(m.Hint(), "2.4.1") {
		t.Errorf("hint %q does not name the fixing release", m.Hint())
	}
}

func TestProbe(t *testing.T) {
	for _, d := range []pcsc.Daemon{
		{Version: pcsc.V44, Readers: 16},
		{Version: pcsc.V45, Readers: 16},
		{Version: pcsc.V45, Lenient: true, Readers: 16},
		{Version: pcsc.V46, Lenient: true, Readers: 16},
		{Version: pcsc.V45, Readers: 48}, // Fedora's maxreaders patch
		{Version: pcsc.V44, Readers: 32}, // RHEL 7's
	} {
		t.Run(fmt.Sprintf("%v, %d readers", d, d.Readers), func(t *testing.T) {
			fake := pcsctest.Serve(t, d, "Virtual PCD 00 00")
			got, err := pcsc.Probe(context.Background(), fake.Socket)
			if err != nil {
				t.Fatal(err)
			}
			if got != d {
				t.Errorf("Probe = %+v, want %+v", got, d)
			}
			// Neither request leaves anything behind in the daemon.
			if r := fake.Received(); !slices.Contains(r, pcsc.CmdGetReadersState) {
				t.Errorf("daemon received %v", r)
			}
		})
	}
}

// A peer that answers CMD_VERSION but not the array probe (pcsctest's echo
// daemon) is probed at once, its array size unknown.
func TestProbeEcho(t *testing.T) {
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.V44})
	start := time.Now()
	got, err := pcsc.Probe(context.Background(), fake.Socket)
	if err != nil || got != (pcsc.Daemon{Version: pcsc.V44}) {
		t.Fatalf("Probe = %+v, %v", got, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Probe took %v", d)
	}
}

func TestProbeNoDaemon(t *testing.T) {
	_, err := pcsc.Probe(context.Background(), filepath.Join(t.TempDir(), "missing.comm"))
	if !errors.Is(err, pcsc.ErrNoDaemon) {
		t.Fatalf("err = %v, want ErrNoDaemon", err)
	}
}

func FuzzReadOpening(f *testing.F) {
	f.Add(unhex(f, "0c000000 11000000 04000000 04000000 00000000"))
	f.Add(unhex(f, "08000000 0d000000 75314063 00000000"))
	f.Add(unhex(f, "10000000 11000000 04000000 04000000 00000000 00000000"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var buf [pcsc.OpeningMax]byte
		r := bytes.NewReader(in)
		o, raw, err := pcsc.ReadOpening(r, &buf)
		if read := len(in) - r.Len(); read > pcsc.OpeningMax {
			t.Fatalf("read %d bytes, more than %d", read, pcsc.OpeningMax)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(raw, in[:len(raw)]) {
			t.Fatalf("raw is not the input prefix")
		}
		if o.Command == pcsc.CmdVersion {
			if got := pcsc.AppendVersionRequest(nil, o.Version); !bytes.Equal(got[:16], raw[:16]) {
				t.Fatalf("round trip: %x != %x", got, raw)
			}
		}
	})
}

func TestClientOfRelease(t *testing.T) {
	tests := []struct {
		in       string
		version  pcsc.Version
		fallback bool
		ok       bool
	}{
		{"1.9.9-2", pcsc.V44, false, true},
		{"2.0.3-1build1", pcsc.V44, false, true},
		{"2.3.3-1", pcsc.V45, false, true},
		{"2.4.0_1,2", pcsc.V45, false, true},
		{"2.4.1", pcsc.V45, true, true},
		{"2.5.1-r0", pcsc.V46, true, true},
		{"2.5", pcsc.V46, true, true},
		{"1.8.23", pcsc.V43, false, true},
		{"1.8.24", pcsc.V44, false, true},
		{"", pcsc.Version{}, false, false},
		{"package pcsc-lite-libs is not installed", pcsc.Version{}, false, false},
		{"1.4.0", pcsc.Version{}, false, false},
	}
	for _, tt := range tests {
		c, ok := pcsc.ClientOfRelease(tt.in)
		if ok != tt.ok || c.Version != tt.version || c.Fallback != tt.fallback {
			t.Errorf("ClientOfRelease(%q) = %+v, %v; want %v fallback=%v ok=%v", tt.in, c, ok, tt.version, tt.fallback, tt.ok)
		}
	}
}

// The measured matrix: Debian 1.9.9, 2.3.3 and 2.5.3 against each other.
func TestServes(t *testing.T) {
	c199, _ := pcsc.ClientOfRelease("1.9.9")
	c233, _ := pcsc.ClientOfRelease("2.3.3")
	c253, _ := pcsc.ClientOfRelease("2.5.3")
	d199 := pcsc.Daemon{Version: pcsc.V44}
	d233 := pcsc.Daemon{Version: pcsc.V45}
	d253 := pcsc.Daemon{Version: pcsc.V46, Lenient: true}
	tests := []struct {
		c    pcsc.Client
		d    pcsc.Daemon
		want bool
	}{
		{c199, d199, true}, {c199, d233, false}, {c199, d253, true},
		{c233, d199, false}, {c233, d233, true}, {c233, d253, true},
		{c253, d199, true}, {c253, d233, true}, {c253, d253, true},
	}
	for _, tt := range tests {
		if got := tt.d.Serves(tt.c); got != tt.want {
			t.Errorf("%v serves %v = %v, want %v", tt.d, tt.c, got, tt.want)
		}
	}
}
