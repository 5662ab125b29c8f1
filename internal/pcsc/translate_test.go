package pcsc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// table is a translation table from testdata/translate (see its README).
type table struct {
	dialect proxy.Dialect
	policy  *pcsc.Policy
	notices []string
	steps   []step
}

type step struct {
	op string // "guest>", ">host", "host>", ">guest"
	b  []byte
}

func parseTable(s string) (table, error) {
	var t table
	policy := func() *pcsc.Policy {
		if t.policy == nil {
			t.policy = new(pcsc.Policy)
		}
		return t.policy
	}
	for i, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		rest := strings.TrimSpace(line[len(f[0]):])
		var err error
		switch op, times, _ := strings.Cut(f[0], "*"); op {
		case "guest", "host":
			var minor uint32
			if _, err = fmt.Sscanf(rest, "4.%d", &minor); err == nil {
				v := pcsc.Version{Major: 4, Minor: minor}
				if op == "guest" {
					t.dialect.Guest = v
				} else {
					t.dialect.Host = v
				}
			}
		case "guest-slots":
			t.dialect.GuestSlots, err = strconv.Atoi(rest)
		case "host-slots":
			t.dialect.HostSlots, err = strconv.Atoi(rest)
		case "readers":
			for _, q := range strings.Split(rest, `" "`) {
				policy().Readers = append(policy().Readers, strings.Trim(q, `"`))
			}
		case "deny-control":
			policy().DenyControl = true
		case "notice":
			t.notices = append(t.notices, strings.Trim(rest, `"`))
		case "guest>", ">host", "host>", ">guest":
			n := 1
			if times != "" {
				if n, err = strconv.Atoi(times); err != nil {
					break
				}
			}
			var b []byte
			if b, err = pcsctest.ParseBytes(rest); err != nil {
				break
			}
			for range n {
				t.steps = append(t.steps, step{op, b})
			}
		default:
			err = fmt.Errorf("unknown directive %q", f[0])
		}
		if err != nil {
			return t, fmt.Errorf("line %d: %v", i+1, err)
		}
	}
	return t, nil
}

// unixPair returns the two ends of a connected Unix stream socket.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.UnixConn), b.(*net.UnixConn)
}

// proxied is a Proxy between two socket pairs: the test is the guest
// client at one end and the daemon at the other.
type proxied struct {
	client, daemon *net.UnixConn
	done           chan error

	mu      sync.Mutex
	notices []string
	calls   []proxy.Call
}

func startProxy(t testing.TB, d proxy.Dialect, g *proxy.Guest, audit bool) *proxied {
	t.Helper()
	client, guestEnd := unixPair(t)
	hostEnd, daemon := unixPair(t)
	x := &proxied{client: client, daemon: daemon, done: make(chan error, 2)}
	cfg := proxy.Config{Dialect: d, Guest: g, OnNotice: func(n *proxy.Notice) {
		x.mu.Lock()
		x.notices = append(x.notices, fmt.Sprintf("%s %s rv=%#x: %s", pcsc.CommandName(n.Command), n.Reader, n.RV, n.Reason))
		x.mu.Unlock()
	}}
	if audit {
		cfg.OnCall = func(c *proxy.Call) {
			x.mu.Lock()
			x.calls = append(x.calls, *c)
			x.mu.Unlock()
		}
	}
	p, err := proxy.New(guestEnd, hostEnd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The half-closes bridge.Pipe does.
	go func() {
		err := p.Requests()
		hostEnd.CloseWrite()
		x.done <- err
	}()
	go func() {
		err := p.Replies()
		guestEnd.CloseWrite()
		x.done <- err
	}()
	t.Cleanup(func() {
		guestEnd.Close()
		hostEnd.Close()
	})
	return x
}

// end closes both ends' sending halves and checks that neither receives
// anything more and the proxy ends cleanly.
func (x *proxied) end(t testing.TB) {
	t.Helper()
	x.client.CloseWrite()
	x.daemon.CloseWrite()
	for name, c := range map[string]*net.UnixConn{"guest": x.client, "host": x.daemon} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if rest, err := io.ReadAll(c); err != nil || len(rest) > 0 {
			t.Errorf("%s received %d bytes more (%x), %v", name, len(rest), rest[:min(len(rest), 32)], err)
		}
	}
	for range 2 {
		if err := <-x.done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	}
}

func expect(t testing.TB, c net.Conn, who string, want []byte, i int) {
	t.Helper()
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("step %d: %s got %d of %d bytes (%x): %v", i, who, n, len(want), got[:min(n, 64)], err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("step %d: %s got\n%x\nwant\n%x", i, who, got, want)
	}
}

func TestTranslationTables(t *testing.T) {
	files, err := filepath.Glob("testdata/translate/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no tables: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tab, err := parseTable(string(b))
			if err != nil {
				t.Fatal(err)
			}
			x := startProxy(t, tab.dialect, proxy.NewGuest(tab.policy), false)
			for i, s := range tab.steps {
				switch s.op {
				case "guest>":
					x.client.Write(s.b)
				case "host>":
					x.daemon.Write(s.b)
				case ">host":
					expect(t, x.daemon, "host", s.b, i)
				case ">guest":
					expect(t, x.client, "guest", s.b, i)
				}
			}
			x.end(t)
			x.mu.Lock()
			defer x.mu.Unlock()
			for _, want := range tab.notices {
				if !strings.Contains(strings.Join(x.notices, "\n"), want) {
					t.Errorf("no notice says %q; notices:\n%s", want, strings.Join(x.notices, "\n"))
				}
			}
			if len(tab.notices) == 0 && len(x.notices) > 0 {
				t.Errorf("unexpected notices:\n%s", strings.Join(x.notices, "\n"))
			}
		})
	}
}

// Without translation or policy, the proxy passes every recorded exchange
// through unchanged, in pieces of any size, as the byte relay would.
func TestProxyIdentity(t *testing.T) {
	for _, x := range loadExchanges(t) {
		t.Run(x.name, func(t *testing.T) {
			p := startProxy(t, proxy.Dialect{Guest: x.version, Host: x.version, GuestSlots: x.slots, HostSlots: x.slots}, nil, true)
			segs := x.segments
			// CMD_VERSION is the relay's to exchange, not the proxy's.
			if s := segs[0]; s.client && bytes.HasPrefix(s.b, []byte{12, 0, 0, 0, 0x11, 0, 0, 0}) {
				segs = segs[2:]
			}
			for i, s := range segs {
				from, to, who := p.daemon, p.client, "guest"
				if s.client {
					from, to, who = p.client, p.daemon, "host"
				}
				for c := range pieces(s.b, 5) {
					from.Write(c)
				}
				expect(t, to, who, s.b, i)
			}
			p.end(t)
		})
	}
}

// An extended APDU and its response, each larger than the proxy's
// buffers, pass through whole.
func TestProxyExtendedAPDU(t *testing.T) {
	for name, d := range map[string]proxy.Dialect{
		"4.4":        {Guest: pcsc.V44, Host: pcsc.V44},
		"4.5 on 4.4": {Guest: pcsc.V45, Host: pcsc.V44},
	} {
		t.Run(name, func(t *testing.T) {
			x := startProxy(t, d, nil, false)
			req, rep := transmitExchange(t)
			const apduLen, respLen = 65536, 65538 // Lc of 65536; 65536 bytes and SW1 SW2
			hdr := slices.Clone(req[0])
			st := slices.Clone(req[1])
			binary.LittleEndian.PutUint32(st[12:], apduLen) // cbSendLength
			apdu := bytes.Repeat([]byte{0xA5}, apduLen)
			go func() {
				for _, b := range [][]byte{hdr, st, apdu} {
					x.client.Write(b)
				}
			}()
			expect(t, x.daemon, "host", slices.Concat(hdr, st, apdu), 0)
			rst := slices.Clone(rep[0])
			binary.LittleEndian.PutUint32(rst[24:], respLen) // pcbRecvLength
			resp := bytes.Repeat([]byte{0x5A}, respLen)
			go func() {
				x.daemon.Write(rst)
				x.daemon.Write(resp)
			}()
			expect(t, x.client, "guest", slices.Concat(rst, resp), 1)
			x.end(t)
		})
	}
}

// pieces yields b in pieces of n bytes.
func pieces(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

// A guest that breaks the protocol is cut off, as pcscd would cut it off.
func TestProxyClosesOnViolation(t *testing.T) {
	for name, in := range map[string]string{
		"0x15 from 4.4":      "00000000 15000000",
		"CMD_VERSION again":  "0c000000 11000000 04000000 04000000 00000000",
		"wrong size":         "04000000 01000000 00000000",
		"16 requests queued": strings.Repeat("08000000 0b000000 4cf54f5a 00000000 ", 17),
	} {
		t.Run(name, func(t *testing.T) {
			x := startProxy(t, proxy.Dialect{Guest: pcsc.V44, Host: pcsc.V44}, nil, false)
			b, err := pcsctest.ParseBytes(in)
			if err != nil {
				t.Fatal(err)
			}
			x.client.Write(b)
			select {
			case err := <-x.done:
				if !errors.Is(err, pcsc.ErrProtocol) {
					t.Errorf("Requests: %v, want a protocol error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("proxy did not stop")
			}
		})
	}
}

// The audit log has one call per request, with sizes and no payload.
func TestProxyAudit(t *testing.T) {
	x := startProxy(t, proxy.Dialect{Guest: pcsc.V46, Host: pcsc.V46}, proxy.NewGuest(&pcsc.Policy{}), true)
	var card exchange
	for _, e := range loadExchanges(t) {
		if e.name == "card-2.5.1.txt" {
			card = e
		}
	}
	for i, s := range card.segments {
		from, to, who := x.daemon, x.client, "guest"
		if s.client {
			from, to, who = x.client, x.daemon, "host"
		}
		from.Write(s.b)
		expect(t, to, who, s.b, i)
	}
	x.end(t)
	x.mu.Lock()
	defer x.mu.Unlock()
	want := []string{"SCARD_CONNECT", "SCARD_BEGIN_TRANSACTION", "SCARD_TRANSMIT", "SCARD_TRANSMIT", "SCARD_GET_ATTRIB",
		"SCARD_CONTROL", "SCARD_STATUS", "SCARD_END_TRANSACTION", "SCARD_RECONNECT", "SCARD_DISCONNECT"}
	if len(x.calls) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(x.calls), len(want), x.calls)
	}
	for i, c := range x.calls {
		if got := pcsc.CommandName(c.Command); got != want[i] {
			t.Errorf("call %d: %s, want %s", i, got, want[i])
		}
		if c.Reader != "Virtual PCD 00 00" {
			t.Errorf("call %d (%s): reader %q", i, want[i], c.Reader)
		}
	}
	tr := x.calls[2]
	if tr.RequestBytes != 8+32+5 || tr.ReplyBytes != 32+2 || !tr.HasRV || tr.RV != 0 {
		t.Errorf("transmit call: %+v", tr)
	}
	if short := x.calls[3]; short.RV != pcsc.ReturnInsufficientBuffer || short.ReplyBytes != 32 {
		t.Errorf("short transmit call: %+v", short)
	}
}
