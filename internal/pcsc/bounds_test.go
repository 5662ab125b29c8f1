package pcsc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// A guest that loops SCARD_ESTABLISH_CONTEXT on one connection does not
// grow what the proxy remembers: pcscd keeps one context per connection,
// the last (MSGAddContext, src/winscard_svc.c:953-957 in pcsc-lite 2.5.1),
// and so does the proxy. The earlier ones can be neither released nor
// cancelled in pcscd, and the guest may no longer cancel them either.
func TestProxyContextBound(t *testing.T) {
	fake := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V44}, shownReader)
	g := proxy.NewGuest(hostilePolicy())
	cl := proxiedClient(t, fake.Socket, proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, g)
	var issued []uint32
	for range 1000 {
		h, err := cl.Establish()
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, h)
	}
	last := issued[len(issued)-1]
	for _, h := range issued {
		if g.OwnsContext(h) != (h == last) {
			t.Fatalf("context %#x owned: %v; only the last (%#x) should be", h, g.OwnsContext(h), last)
		}
	}
	canceller := proxiedClient(t, fake.Socket, proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, g)
	for h, want := range map[uint32]uint32{issued[0]: pcsc.ReturnInvalidHandle, last: pcsc.ReturnSuccess} {
		if rv := rawCancel(t, canceller.Conn, h); rv != want {
			t.Errorf("cancel of %#x: rv %#x, want %#x", h, rv, want)
		}
	}
	if err := cl.Release(last); err != nil {
		t.Fatal(err)
	}
	if g.OwnsContext(last) {
		t.Error("released context still owned")
	}
}

// proxiedClient is a client of the daemon at socket through a proxy for
// the guest g, after the CMD_VERSION exchange.
func proxiedClient(t *testing.T, socket string, d proxy.Dialect, g *proxy.Guest) *pcsctest.Client {
	t.Helper()
	host, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	if _, err := host.Write(pcsc.AppendVersionRequest(nil, d.Host)); err != nil {
		t.Fatal(err)
	}
	var vb [12]byte
	if r, err := pcsc.ReadVersionReply(host, &vb); err != nil || !r.Accepted() {
		t.Fatalf("CMD_VERSION: %+v, %v", r, err)
	}
	client, guestEnd := unixPair(t)
	p, err := proxy.New(guestEnd, host, proxy.Config{Dialect: d, Guest: g})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		p.Requests()
		host.(*net.UnixConn).CloseWrite()
		<-done
		p.Close()
	}()
	go func() {
		p.Replies()
		guestEnd.CloseWrite()
		close(done)
	}()
	client.SetDeadline(time.Now().Add(20 * time.Second))
	return &pcsctest.Client{Conn: client, Version: d.Guest, Server: d.Guest}
}

// rawCancel sends SCARD_CANCEL for h on c and returns the rv of its reply.
func rawCancel(t *testing.T, c net.Conn, h uint32) uint32 {
	t.Helper()
	req := binary.LittleEndian.AppendUint32(nil, pcsc.CancelSize)
	req = binary.LittleEndian.AppendUint32(req, pcsc.CmdCancel)
	req = binary.LittleEndian.AppendUint32(req, h)
	req = binary.LittleEndian.AppendUint32(req, 0)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [pcsc.CancelSize]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint32(rep[4:])
}

func TestCheckPolicyDaemon(t *testing.T) {
	for _, c := range []struct {
		d    pcsc.Daemon
		want bool
	}{
		{pcsc.Daemon{}, true}, // not probed: each connection is checked
		{pcsc.Daemon{Version: pcsc.V44}, true},
		{pcsc.Daemon{Version: pcsc.V45, Lenient: true}, true},
		{pcsc.Daemon{Version: pcsc.V46, Lenient: true}, true},
		{pcsc.Daemon{Version: pcsc.V43}, false},
		{pcsc.Daemon{Version: pcsc.Version{Major: 4, Minor: 7}, Lenient: true}, false},
		{pcsc.Daemon{Version: pcsc.Version{Major: 5, Minor: 0}}, false},
	} {
		err := pcsc.CheckPolicyDaemon(c.d)
		if (err == nil) != c.want {
			t.Errorf("%v: %v", c.d, err)
			continue
		}
		var u *pcsc.UnknownDaemonError
		if err != nil && (!errors.Is(err, pcsc.ErrUnknownProtocol) || !errors.As(err, &u) || u.Hint() == "") {
			t.Errorf("%v: %v is not an *UnknownDaemonError with a hint", c.d, err)
		}
	}
	err := pcsc.CheckPolicyDaemon(pcsc.Daemon{Version: pcsc.V43})
	if !strings.Contains(err.Error(), "4.3") || !strings.Contains(err.(*pcsc.UnknownDaemonError).Hint(), "1.8.24") {
		t.Errorf("4.3: %v", err)
	}
	for _, d := range []proxy.Dialect{
		{Guest: pcsc.V43, Host: pcsc.V43},
		{Guest: pcsc.Version{Major: 5, Minor: 4}, Host: pcsc.Version{Major: 5, Minor: 4}},
		{Guest: pcsc.V44, Host: pcsc.V44, Daemon: pcsc.Version{Major: 4, Minor: 7}},
	} {
		if err := d.Validate(); !errors.Is(err, pcsc.ErrUnknownProtocol) {
			t.Errorf("%+v: %v, want ErrUnknownProtocol", d, err)
		}
	}
}

func record(name string, atr []byte, mod func(*pcsc.ReaderState)) []byte {
	var r pcsc.ReaderState
	copy(r.Name[:], name)
	r.State, r.ATRLength = 0x02, uint32(len(atr))
	if atr != nil {
		r.State = 0x34
		copy(r.ATR[:], atr)
	}
	if mod != nil {
		mod(&r)
	}
	b, _ := binary.Append(nil, binary.LittleEndian, &r)
	return b
}

func TestValidRecord(t *testing.T) {
	for _, c := range []struct {
		name string
		rec  []byte
		want string
		ok   bool
	}{
		{"used", record("Virtual PCD 00 01", []byte{0x3b, 2}, nil), "Virtual PCD 00 01", true},
		{"multi-slot", record("Gemalto Prox Dual 01 0A", nil, nil), "Gemalto Prox Dual 01 0A", true},
		{"unused, 2.4", record("", nil, func(r *pcsc.ReaderState) { r.State, r.ATRLength = 0, 34 }), "", true},
		{"unused, 2.5 padding", make([]byte, pcsc.ReaderStateSize), "", true},
		{"unused, padding set", record("", nil, func(r *pcsc.ReaderState) { r.State, r.Pad = 0, [3]byte{9, 9, 9} }), "", true},
		{"unused with a state", record("", nil, nil), "", false},
		{"no slot suffix", record("Virtual PCD", nil, nil), "", false},
		{"lower-case hex", record("Virtual PCD 0a 00", nil, nil), "", false},
		{"control byte", record("\x04", nil, nil), "", false},
		{"quote, misframed", record("\"", nil, nil), "", false},
		{"bytes after the NUL", record("Virtual PCD 00 01\x00Virtual PCD 00 00", nil, nil), "", false},
		{"ATR length 35", record("Virtual PCD 00 01", nil, func(r *pcsc.ReaderState) { r.ATRLength = 35 }), "", false},
		{"name fills the field", record(strings.Repeat("A", 122)+" 00 00", nil, nil), "", false},
	} {
		name, ok := pcsc.ValidRecord(c.rec)
		if ok != c.ok || string(name) != c.want {
			t.Errorf("%s: %q, %v; want %q, %v", c.name, name, ok, c.want, c.ok)
		}
	}
	rec := record("Virtual PCD 00 01", []byte{0x3b, 2}, func(r *pcsc.ReaderState) {
		r.ATR[10], r.Pad = 0xEE, [3]byte{1, 2, 3}
	})
	want := record("Virtual PCD 00 01", []byte{0x3b, 2}, nil)
	pcsc.CleanRecord(rec)
	if !bytes.Equal(rec, want) {
		t.Errorf("cleaned record %x, want %x", rec, want)
	}
}

// FuzzValidRecord: whatever the bytes, a record that passes has a name of
// pcscd's form, and cleaning it is idempotent.
func FuzzValidRecord(f *testing.F) {
	f.Add(record("Virtual PCD 00 01", []byte{0x3b, 2}, nil))
	f.Add(make([]byte, pcsc.ReaderStateSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < pcsc.ReaderStateSize {
			return
		}
		rec := b[:pcsc.ReaderStateSize]
		name, ok := pcsc.ValidRecord(rec)
		if !ok || len(name) == 0 {
			return
		}
		if len(name) < 6 || name[len(name)-3] != ' ' || bytes.IndexByte(name, 0) >= 0 {
			t.Fatalf("accepted name %q", name)
		}
		pcsc.CleanRecord(rec)
		again := bytes.Clone(rec)
		pcsc.CleanRecord(again)
		if n2, ok := pcsc.ValidRecord(rec); !ok || !bytes.Equal(n2, name) || !bytes.Equal(again, rec) {
			t.Fatalf("cleaning changed the record's validity or is not idempotent")
		}
	})
}
