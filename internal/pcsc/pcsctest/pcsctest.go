// Package pcsctest serves a fake pcscd on a Unix socket for unit tests.
//
// Start's fake answers CMD_VERSION as a daemon of the given version would
// and echoes every byte after an accepted handshake back to the client,
// which is enough to test byte relays. Serve's fake speaks the protocol of
// the given version: contexts, readers that tests plug in and out, cards
// that echo APDUs, reader arrays of any size, events and cancel. End-to-end
// tests use the real pcscd instead.
//
// Client (Dial, Open) is the other end: a pcsc-lite client library of one
// protocol version on a raw connection. ParseExchange reads the byte
// exchanges recorded from real daemons (internal/pcsc/testdata/exchanges).
package pcsctest

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Daemon is a running fake pcscd.
type Daemon struct {
	Socket string
	pcsc.Daemon

	ln       net.Listener
	protocol bool // Serve's fake rather than Start's
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup

	// Serve's state, guarded by mu.
	slots      []*slot
	events     uint32 // CMD_GET_READER_EVENTS
	registered map[*conn]bool
	contexts   map[uint32]*conn
	received   []uint32
}

// Start serves a fake daemon speaking d on a new socket in a temporary
// directory. It stops when the test ends.
func Start(t testing.TB, d pcsc.Daemon) *Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "pcscd.comm")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fd := &Daemon{Socket: path, Daemon: d, ln: ln, conns: map[net.Conn]bool{}}
	fd.wg.Add(1)
	go fd.serve()
	t.Cleanup(fd.Close)
	return fd
}

// Close stops the daemon and closes its connections.
func (d *Daemon) Close() {
	d.ln.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// Conns returns the number of open client connections.
func (d *Daemon) Conns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

func (d *Daemon) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		d.conns[c] = true
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if d.protocol {
				d.speak(c)
			} else {
				d.echo(c)
			}
			d.mu.Lock()
			delete(d.conns, c)
			d.mu.Unlock()
			c.Close()
		}()
	}
}

func (d *Daemon) echo(c net.Conn) {
	var buf [pcsc.OpeningMax]byte
	for {
		o, raw, err := pcsc.ReadOpening(c, &buf)
		if err != nil {
			return
		}
		if o.Command == pcsc.CmdCancel {
			c.Write(pcsc.AppendRefusal(nil, o, raw, 0))
			return
		}
		r := pcsc.VersionReply{Version: d.Version}
		if !d.Accepts(o.Version) {
			r.RV = pcsc.ReturnServiceStopped
		}
		if _, err := c.Write(pcsc.AppendVersionReply(nil, r)); err != nil {
			return
		}
		if r.Accepted() {
			break
		}
	}
	// Echo, honouring half-close: when the client stops sending, finish
	// and close, as pcscd does.
	if _, err := io.Copy(c, c); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
}
