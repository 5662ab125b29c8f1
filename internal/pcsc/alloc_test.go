package pcsc_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// transmitExchange returns one SCardTransmit of a 5-byte APDU as
// libpcsclite writes it (header, struct, APDU) and pcscd answers it
// (struct, then 14 bytes of response), from the captured vectors.
func transmitExchange(t testing.TB) (req [3][]byte, rep [2][]byte) {
	t.Helper()
	b, err := pcsctest.ParseBytes("20000000 09000000")
	if err != nil {
		t.Fatal(err)
	}
	req[0] = b
	req[1], _ = pcsctest.ParseBytes("4cf54f5a 01000000 10000000 05000000 00000000 00000000 02010000 00000000")
	req[2], _ = pcsctest.ParseBytes("00a4040000")
	rep[0], _ = pcsctest.ParseBytes("4cf54f5a 01000000 10000000 05000000 01000000 00000000 0e000000 00000000")
	rep[1] = []byte("Hello world!\x90\x00")
	return req, rep
}

// exchanger runs transmits through a proxy between Unix socket pairs; the
// daemon end answers each with a fixed reply, allocating nothing.
type exchanger struct {
	client net.Conn
	req    [3][]byte
	reply  []byte
}

func newExchanger(t testing.TB, d proxy.Dialect, g *proxy.Guest) *exchanger {
	x := startProxy(t, d, g, false)
	req, rep := transmitExchange(t)
	go func() {
		in := make([]byte, 8+32+5)
		for {
			if _, err := io.ReadFull(x.daemon, in); err != nil {
				return
			}
			if _, err := x.daemon.Write(rep[0]); err != nil {
				return
			}
			if _, err := x.daemon.Write(rep[1]); err != nil {
				return
			}
		}
	}()
	return &exchanger{client: x.client, req: req, reply: make([]byte, 32+14)}
}

func (e *exchanger) once(t testing.TB) {
	for _, m := range e.req {
		if _, err := e.client.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.ReadFull(e.client, e.reply); err != nil {
		t.Fatal(err)
	}
}

// The proxy allocates nothing per message once its buffers are taken,
// with a policy and with translation alike.
func TestProxyZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for name, c := range map[string]struct {
		d proxy.Dialect
		g *proxy.Guest
	}{
		"plain":       {proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, nil},
		"policy":      {proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, proxy.NewGuest(&pcsc.Policy{Readers: []string{"Virtual*"}, DenyControl: true})},
		"4.6 on 4.4":  {proxy.Dialect{Guest: pcsc.V46, Host: pcsc.V44}, nil},
		"48 on 16":    {proxy.Dialect{Guest: pcsc.V45, Host: pcsc.V45, GuestSlots: 48}, nil},
		"4.5 on 4.4":  {proxy.Dialect{Guest: pcsc.V45, Host: pcsc.V44}, nil},
		"4.4 on 4.5":  {proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V45}, nil},
		"4.6 on 4.6 ": {proxy.Dialect{Guest: pcsc.V46, Host: pcsc.V46}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			e := newExchanger(t, c.d, c.g)
			e.once(t) // takes the buffers
			if n := testing.AllocsPerRun(500, func() { e.once(t) }); n > 0.01 {
				t.Errorf("%.2f allocations per transmit", n)
			}
		})
	}
}

// BenchmarkProxy is one transmit round trip through the proxy; compare
// with internal/bench's BenchmarkPipe.
func BenchmarkProxy(b *testing.B) {
	e := newExchanger(b, proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, proxy.NewGuest(&pcsc.Policy{Readers: []string{"Virtual*"}}))
	b.ReportAllocs()
	for b.Loop() {
		e.once(b)
	}
}

// The reader state path allocates nothing either: a GET_READERS_STATE
// whose array the policy filters, record by record.
func TestProxyZeroAllocsReaderStates(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	x := startProxy(t, proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, proxy.NewGuest(hostilePolicy()), false)
	var array []byte
	array = append(array, record(hiddenReader, hiddenATR[:4], nil)...)
	array = append(array, record(shownReader, []byte{0x3b, 2, 0x14, 0x50}, nil)...)
	for range pcsc.DefaultSlots - 2 {
		array = append(array, record("", nil, func(r *pcsc.ReaderState) { r.State, r.ATRLength = 0, 34 })...)
	}
	go func() {
		in := make([]byte, 8)
		for {
			if _, err := io.ReadFull(x.daemon, in); err != nil {
				return
			}
			if _, err := x.daemon.Write(array); err != nil {
				return
			}
		}
	}()
	req := []byte{0, 0, 0, 0, pcsc.CmdGetReadersState, 0, 0, 0}
	got := make([]byte, len(array))
	once := func() {
		if _, err := x.client.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(x.client, got); err != nil {
			t.Fatal(err)
		}
	}
	once()
	if bytes.Contains(got, []byte(hiddenReader)) {
		t.Fatal("the hidden reader reached the guest")
	}
	if n := testing.AllocsPerRun(200, once); n > 0.01 {
		t.Errorf("%.2f allocations per reader state call", n)
	}
}
