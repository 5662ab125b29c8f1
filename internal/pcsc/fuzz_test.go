package pcsc_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// The fuzz targets are seeded with the recorded exchanges of
// testdata/exchanges. Run one with, e.g.:
//
//	go test -run '^$' -fuzz FuzzProxy -fuzztime 1m ./internal/pcsc

func versionOf(b byte) pcsc.Version { return pcsc.Version{Major: 4, Minor: 4 + uint32(b%3)} }

func seed(f *testing.F, add func(x exchange)) {
	for _, x := range loadExchanges(f) {
		add(x)
	}
}

// FuzzRequests: framing a client stream whole or in pieces gives the same
// units, the units are the stream, and every struct decodes and encodes
// back to the same bytes.
func FuzzRequests(f *testing.F) {
	seed(f, func(x exchange) { f.Add(byte(x.version.Minor-4), x.requests, uint8(7)) })
	f.Fuzz(func(t *testing.T, v byte, in []byte, chunk uint8) {
		whole, errWhole := scanRequests(versionOf(v), in, 0)
		pieces, errPieces := scanRequests(versionOf(v), in, int(chunk))
		// Data may come in more pieces; everything else must not change.
		if (errWhole == nil) != (errPieces == nil) || !bytes.Equal(joined(whole), joined(pieces)) {
			t.Fatalf("whole: %d units, %v; pieces: %d units, %v", len(whole), errWhole, len(pieces), errPieces)
		}
		if a, b := fixed(whole), fixed(pieces); len(a) != len(b) {
			t.Fatalf("%d fixed units whole, %d in pieces", len(a), len(b))
		} else {
			for i := range a {
				if a[i].Unit != b[i].Unit {
					t.Fatalf("unit %d: %+v whole, %+v in pieces", i, a[i].Unit, b[i].Unit)
				}
			}
		}
		if errWhole != nil && !pcsc.IsProtocol(errWhole) {
			t.Fatalf("error is not a protocol error: %v", errWhole)
		}
		if got := joined(whole); !bytes.HasPrefix(in, got) {
			t.Fatal("units are not the stream")
		}
		for _, u := range whole {
			if err := roundTrip(u); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzReplies: the same for a server stream, framed by the requests of a
// client stream.
func FuzzReplies(f *testing.F) {
	seed(f, func(x exchange) {
		f.Add(byte(x.version.Minor-4), uint16(x.slots), x.requests, x.replies, uint8(5))
	})
	f.Fuzz(func(t *testing.T, v byte, slots uint16, reqs, reps []byte, chunk uint8) {
		c := newConversation(versionOf(v), int(slots%(pcsc.MaxSlots+8)))
		c.client(reqs, 0)
		err := c.server(reps, int(chunk))
		if err != nil && !pcsc.IsProtocol(err) {
			t.Fatalf("error is not a protocol error: %v", err)
		}
		if got := joined(c.reps); !bytes.HasPrefix(reps, got) {
			t.Fatal("units are not the stream")
		}
		for _, u := range c.reps {
			if u.Len > 288 {
				t.Fatalf("unit of %d bytes", u.Len)
			}
			if err := roundTrip(u); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// fixed drops the data units.
func fixed(us []scanned) []scanned {
	var out []scanned
	for _, u := range us {
		if u.Kind != pcsc.KindData {
			out = append(out, u)
		}
	}
	return out
}

// rw is one end of an in-memory connection.
type rw struct {
	io.Reader
	io.Writer
}

// dialects the proxy fuzz target picks from: the identities first.
var fuzzDialects = []proxy.Dialect{
	{Guest: pcsc.V44, Host: pcsc.V44},
	{Guest: pcsc.V45, Host: pcsc.V45},
	{Guest: pcsc.V46, Host: pcsc.V46},
	{Guest: pcsc.V45, Host: pcsc.V44},
	{Guest: pcsc.V46, Host: pcsc.V44},
	{Guest: pcsc.V46, Host: pcsc.V45, HostSlots: 48},
	{Guest: pcsc.V44, Host: pcsc.V44, GuestSlots: 48},
	{Guest: pcsc.V44, Host: pcsc.V44, HostSlots: 48},
}

// FuzzProxy runs the proxy over a client stream and then a server stream.
// It must not panic whatever the bytes; without translation or policy
// each end receives a prefix of what the other sent, byte for byte.
func FuzzProxy(f *testing.F) {
	seed(f, func(x exchange) {
		reqs, reps := x.requests, x.replies
		if bytes.HasPrefix(reqs, []byte{12, 0, 0, 0, 0x11}) { // CMD_VERSION is the relay's
			reqs, reps = reqs[20:], reps[12:]
		}
		f.Add(byte(x.version.Minor-4), byte(0), reqs, reps)
		f.Add(byte(x.version.Minor-4)+3, byte(3), reqs, reps)
	})
	f.Fuzz(func(t *testing.T, d, policy byte, reqs, reps []byte) {
		dialect := fuzzDialects[int(d)%len(fuzzDialects)]
		var p *pcsc.Policy
		if policy%4 != 0 {
			p = &pcsc.Policy{DenyControl: policy&2 != 0}
			if policy&1 != 0 {
				p.Readers = []string{"Virtual PCD 00 0[1-9]"}
			}
		}
		var toHost, toGuest bytes.Buffer
		x, err := proxy.New(rw{bytes.NewReader(reqs), &toGuest}, rw{bytes.NewReader(reps), &toHost},
			proxy.Config{Dialect: dialect, Guest: proxy.NewGuest(p), OnCall: func(*proxy.Call) {}, OnNotice: func(*proxy.Notice) {}})
		if err != nil {
			t.Fatal(err)
		}
		errReq := x.Requests()
		errRep := x.Replies()
		x.Close()
		for _, err := range []error{errReq, errRep} {
			if err != nil && !pcsc.IsProtocol(err) {
				t.Fatalf("error is not a protocol error: %v", err)
			}
		}
		if p == nil && int(d)%len(fuzzDialects) < 3 {
			if !bytes.HasPrefix(reqs, toHost.Bytes()) {
				t.Fatalf("host got %x, not a prefix of the guest's %x", toHost.Bytes(), reqs)
			}
			if !bytes.HasPrefix(reps, toGuest.Bytes()) {
				t.Fatalf("guest got %x, not a prefix of the host's %x", toGuest.Bytes(), reps)
			}
		}
	})
}
