package pcsc_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// A guest that loops SCARD_ESTABLISH_CONTEXT on one connection does not
// grow what the proxy remembers: pcscd keeps one context per connection,
// the last (MSGAddContext, src/winscard_svc.c:953-957 in pcsc-lite 2.5.1),
// and so does the proxy. The earlier ones can be neither released nor
// cancelled in pcscd, and the guest may no longer cancel them either.
func TestProxyContextBound(t *testing.T) {
	fake := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V44}, shownReader)
	g := pcsc.NewGuest(hostilePolicy())
	cl := proxiedClient(t, fake.Socket, pcsc.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, g)
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
	canceller := proxiedClient(t, fake.Socket, pcsc.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, g)
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
func proxiedClient(t *testing.T, socket string, d pcsc.Dialect, g *pcsc.Guest) *pcsctest.Client {
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
	p, err := pcsc.NewProxy(guestEnd, host, pcsc.ProxyConfig{Dialect: d, Guest: g})
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
	for _, d := range []pcsc.Dialect{
		{Guest: pcsc.V43, Host: pcsc.V43},
		{Guest: pcsc.Version{Major: 5, Minor: 4}, Host: pcsc.Version{Major: 5, Minor: 4}},
		{Guest: pcsc.V44, Host: pcsc.V44, Daemon: pcsc.Version{Major: 4, Minor: 7}},
	} {
		if err := d.Validate(); !errors.Is(err, pcsc.ErrUnknownProtocol) {
			t.Errorf("%+v: %v, want ErrUnknownProtocol", d, err)
		}
	}
}
