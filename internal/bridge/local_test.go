package bridge_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// fakeLocal is a bridge.Local that answers CMD_VERSION with the guest's
// own version, as nativepcsc does, and then echoes.
type fakeLocal struct {
	mu       sync.Mutex
	openings [][]byte
}

func (l *fakeLocal) ServeOpened(ctx context.Context, guest net.Conn, opening []byte) error {
	defer guest.Close()
	l.mu.Lock()
	l.openings = append(l.openings, bytes.Clone(opening))
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { guest.Close() })
	defer stop()
	var buf [pcsc.OpeningMax]byte
	o, _, err := pcsc.ReadOpening(bytes.NewReader(opening), &buf)
	if err != nil {
		return err
	}
	if o.Command == pcsc.CmdVersion {
		guest.Write(pcsc.AppendVersionReply(nil, pcsc.VersionReply{Version: o.Version}))
	} else {
		guest.Write(opening[pcsc.HeaderSize:]) // SCARD_CANCEL: the struct back
	}
	_, err = io.Copy(guest, guest)
	return err
}

func (l *fakeLocal) served() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.openings)
}

// TestServeLocal: with Config.Local, a connection that the byte relay
// would serve is handed to the Local, opening and all, with its bytes
// counted and its version in Stats; every connection that needs the
// protocol stage (policy, audit log, translation, reader arrays of
// another size) or whose version the daemon does not accept as it is
// dials, as without a Local.
func TestServeLocal(t *testing.T) {
	d := pcsc.Daemon{Version: pcsc.V46, Lenient: true, Readers: pcsc.DefaultSlots}
	for _, tc := range []struct {
		name  string
		mod   func(*bridge.Config)
		guest pcsc.Version
		local bool
	}{
		{"4.4", nil, pcsc.V44, true},
		{"4.5", nil, pcsc.V45, true},
		{"4.6", nil, pcsc.V46, true},
		{"unknown version", nil, pcsc.Version{Major: 4, Minor: 3}, false},
		{"policy", func(c *bridge.Config) { c.Policy = &pcsc.Policy{DenyControl: true} }, pcsc.V46, false},
		{"audit", func(c *bridge.Config) { c.Audit = true }, pcsc.V46, false},
		{"48 guest slots", func(c *bridge.Config) { c.GuestSlots = 48 }, pcsc.V44, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := new(fakeLocal)
			e := serveWith(t, pcsctest.Start(t, d), func(c *bridge.Config) {
				c.Daemon, c.Local = d, local
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			c := e.dial(t)
			r := versionExchange(t, c, tc.guest)
			if !tc.local {
				waitFor(t, func() bool { return e.fake.Conns() == 1 })
				if local.served() != 0 {
					t.Errorf("served by the Local, want dialed")
				}
				return
			}
			if !r.Accepted() || r.Version != tc.guest {
				t.Fatalf("version reply %+v", r)
			}
			c.Write([]byte("establish"))
			buf := make([]byte, 9)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "establish" {
				t.Fatalf("echo: %q %v", buf, err)
			}
			if v, ok := e.stats.Client(); !ok || v != tc.guest {
				t.Errorf("Stats.Client = %v, %v", v, ok)
			}
			if e.stats.Open.Load() != 1 || e.fake.Conns() != 0 || local.served() != 1 {
				t.Errorf("open %d, dialed %d, local %d; want 1, 0, 1", e.stats.Open.Load(), e.fake.Conns(), local.served())
			}
			c.Close()
			waitFor(t, func() bool { return e.stats.Open.Load() == 0 })
			if up, down := e.stats.Up.Load(), e.stats.Down.Load(); up != 9 || down != 9 {
				t.Errorf("counted %d up, %d down; want 9 each, as the byte relay counts", up, down)
			}
			if !strings.Contains(e.log.String(), "host=in-process") {
				t.Errorf("log does not say in-process:\n%s", e.log)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		local := new(fakeLocal)
		e := serveWith(t, pcsctest.Start(t, d), func(c *bridge.Config) { c.Daemon, c.Local = d, local })
		c := e.dial(t)
		c.Write([]byte{8, 0, 0, 0, 0x0d, 0, 0, 0, 0x75, 0x31, 0x40, 0x63, 0, 0, 0, 0})
		got := make([]byte, 8)
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte{0x75, 0x31, 0x40, 0x63, 0, 0, 0, 0}) {
			t.Fatalf("cancel reply %x, %v", got, err)
		}
		if local.served() != 1 || e.fake.Conns() != 0 {
			t.Errorf("local %d, dialed %d; want 1, 0", local.served(), e.fake.Conns())
		}
	})
}
