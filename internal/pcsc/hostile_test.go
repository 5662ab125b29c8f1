package pcsc_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
)

// A hostile guest: a client that writes the reader state commands of
// protocols 4.4 to 4.6 in any order and grouping, pipelined or split at
// any byte, while cards come and go and waits are cancelled, through a
// proxy whose policy hides one reader. Whatever it does, no byte of the
// hidden reader's name or its card's ATR may reach it.

const (
	hiddenReader = "Virtual PCD 00 00"
	shownReader  = "Virtual PCD 00 01"
)

// hiddenATR is the fake daemon's card in the hidden reader: bytes that
// appear nowhere else in a stream.
var hiddenATR = []byte{0x3B, 0x8A, 'S', 'E', 'C', 'R', 'E', 'T', '-', 'A', 'T', 'R'}

// hostilePolicy shows one of the two readers.
func hostilePolicy() *pcsc.Policy { return &pcsc.Policy{Readers: []string{shownReader}} }

// hostile is one guest connection through a proxy to a daemon socket.
type hostile struct {
	t       testing.TB
	socket  string
	d       proxy.Dialect
	client  *net.UnixConn
	got     chan []byte
	ctx     uint32
	pending []byte
}

// Commands a hostile op sequence writes, indexed by op.
var hostileCommands = []uint32{
	pcsc.CmdWaitReaderStateChange, pcsc.CmdStopWaiting, pcsc.CmdGetReadersState,
	pcsc.CmdGetReaderEvents, pcsc.CmdGetReadersStateSize, pcsc.CmdGetReadersStateArray,
}

// startHostile opens a connection to the daemon at socket, completes its
// CMD_VERSION exchange in the host's dialect, puts a proxy with the hiding
// policy in front of it and establishes a context through it.
func startHostile(t testing.TB, socket string, d proxy.Dialect) *hostile {
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
		t.Fatalf("CMD_VERSION %s: %+v, %v", d.Host, r, err)
	}
	client, guestEnd := unixPair(t)
	p, err := proxy.New(guestEnd, host, proxy.Config{Dialect: d, Guest: proxy.NewGuest(hostilePolicy())})
	if err != nil {
		t.Fatal(err)
	}
	hc := host.(*net.UnixConn)
	// Once the proxy has ended both ways, the guest's end is closed, as
	// bridge.Serve closes a connection whose proxy ended: a hostile guest
	// still writing then fails at once instead of blocking on a full
	// socket that nothing reads (1-byte writes fill a Unix socket's send
	// buffer after a few hundred).
	var ended sync.WaitGroup
	ended.Go(func() {
		p.Requests()
		hc.CloseWrite()
	})
	ended.Go(func() {
		p.Replies()
		guestEnd.CloseWrite()
		p.Close()
	})
	go func() {
		ended.Wait()
		guestEnd.Close()
	}()
	h := &hostile{t: t, socket: socket, d: d, client: client, got: make(chan []byte, 1)}
	req := binary.LittleEndian.AppendUint32(nil, pcsc.EstablishSize)
	req = binary.LittleEndian.AppendUint32(req, pcsc.CmdEstablishContext)
	req = append(req, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [pcsc.EstablishSize]byte
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, rep[:]); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Time{})
	h.ctx = binary.LittleEndian.Uint32(rep[4:])
	go func() {
		b, _ := io.ReadAll(client)
		h.got <- b
	}()
	return h
}

// add appends a request of cmd to what the next flush writes.
func (h *hostile) add(cmd uint32) {
	if !h.d.Guest.Supports(cmd) {
		return
	}
	h.pending = binary.LittleEndian.AppendUint32(h.pending, 0)
	h.pending = binary.LittleEndian.AppendUint32(h.pending, cmd)
}

// flush writes what was added in pieces of n bytes (0: in one write).
func (h *hostile) flush(n int) {
	b := h.pending
	h.pending = nil
	if n <= 0 {
		n = len(b)
	}
	for len(b) > 0 {
		k := min(n, len(b))
		if _, err := h.client.Write(b[:k]); err != nil {
			return // the proxy closed the connection: fine
		}
		b = b[k:]
	}
}

// cancel cancels the guest's wait from a connection of its own, as
// SCardCancel does (a first message without CMD_VERSION).
func (h *hostile) cancel() {
	c, err := net.Dial("unix", h.socket)
	if err != nil {
		h.t.Error(err)
		return
	}
	defer c.Close()
	req := binary.LittleEndian.AppendUint32(nil, pcsc.CancelSize)
	req = binary.LittleEndian.AppendUint32(req, pcsc.CmdCancel)
	req = binary.LittleEndian.AppendUint32(req, h.ctx)
	req = binary.LittleEndian.AppendUint32(req, 0)
	c.Write(req)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadFull(c, make([]byte, pcsc.CancelSize))
}

// finish ends the guest's stream and returns everything it received.
func (h *hostile) finish() []byte {
	h.flush(0)
	h.client.CloseWrite()
	select {
	case b := <-h.got:
		return b
	case <-time.After(20 * time.Second):
		h.client.Close()
		h.t.Fatal("the proxy did not end after the guest closed")
		return nil
	}
}

// leaks returns what of the hidden reader is in b.
func leaks(b []byte, atr []byte) string {
	for _, s := range [][]byte{[]byte(hiddenReader), []byte("irtual PCD 00 00"), atr} {
		if len(s) > 0 {
			if i := bytes.Index(b, s); i >= 0 {
				return fmt.Sprintf("%q at offset %d of %d bytes", s, i, len(b))
			}
		}
	}
	return ""
}

// events is what a hostile run can do to the host's readers.
type events interface {
	cardIn(hidden bool)
	cardOut(hidden bool)
}

type fakeEvents struct{ d *pcsctest.Daemon }

func (f fakeEvents) cardIn(hidden bool) {
	if hidden {
		f.d.InsertCard(hiddenReader, hiddenATR)
	} else {
		f.d.InsertCard(shownReader, []byte{0x3B, 0x02, 0x14, 0x50})
	}
}

func (f fakeEvents) cardOut(hidden bool) {
	if hidden {
		f.d.RemoveCard(hiddenReader)
	} else {
		f.d.RemoveCard(shownReader)
	}
}

// runHostile plays ops, a byte string read as a program, against the
// daemon and returns what the guest received. Each byte picks an op:
//
//	0-5   add a command (WAIT, STOP, GET_READERS_STATE, GET_READER_EVENTS,
//	      GET_READERS_STATE_SIZE, GET_READERS_STATE_ARRAY)
//	6     write what was added in one write
//	7     write it in pieces of 1 to 8 bytes (the next byte says)
//	8     wait a moment, so that replies come back
//	9     cancel the wait from another connection
//	10-13 a card in or out of the hidden or the shown reader
func runHostile(t testing.TB, socket string, d proxy.Dialect, ev events, ops []byte) []byte {
	h := startHostile(t, socket, d)
	for i := 0; i < len(ops); i++ {
		switch op := ops[i] % 14; {
		case op < 6:
			h.add(hostileCommands[op])
		case op == 6:
			h.flush(0)
		case op == 7:
			n := 1
			if i+1 < len(ops) {
				i++
				n = int(ops[i]%8) + 1
			}
			h.flush(n)
		case op == 8:
			time.Sleep(2 * time.Millisecond)
		case op == 9:
			h.cancel()
		case ev != nil:
			if op < 12 {
				ev.cardIn(op == 10)
			} else {
				ev.cardOut(op == 12)
			}
		}
	}
	return h.finish()
}

// The reproduced leak: WAIT, the dump read, then STOP_WAITING and
// GET_READERS_STATE in one write. The proxy took STOP's 8-byte answer for
// the start of the array and passed the hidden reader's record shifted by
// 8 bytes.
var reproducedLeak = []byte{0, 6, 8, 1, 2, 6, 8}

// hostileDialects are the dialects of the fake daemon runs: each version
// natively, and the translations.
var hostileDialects = []proxy.Dialect{
	{Guest: pcsc.V44, Host: pcsc.V44},
	{Guest: pcsc.V45, Host: pcsc.V45},
	{Guest: pcsc.V46, Host: pcsc.V46},
	{Guest: pcsc.V45, Host: pcsc.V44},
	{Guest: pcsc.V46, Host: pcsc.V44},
	{Guest: pcsc.V46, Host: pcsc.V45},
}

func fakeDaemon(t testing.TB, v pcsc.Version) (*pcsctest.Daemon, events) {
	d := pcsctest.Serve(t, pcsc.Daemon{Version: v, Lenient: v != pcsc.V44}, hiddenReader, shownReader)
	d.InsertCard(hiddenReader, hiddenATR)
	return d, fakeEvents{d}
}

// hostileSeeds are op programs for the fuzz target and the table test.
var hostileSeeds = [][]byte{
	reproducedLeak,
	{0, 6, 8, 1, 2, 7, 3, 8},
	{0, 1, 2, 6, 8},                   // all three at once
	{0, 6, 10, 2, 6, 8, 1, 6, 8},      // an event while armed, then the array
	{0, 6, 9, 2, 6, 8, 1, 2, 6, 8},    // a cancel while armed
	{0, 6, 8, 3, 4, 5, 1, 2, 6, 8},    // 4.5/4.6 calls while waiting
	{0, 4, 5, 6, 8, 12, 10, 1, 6, 8},  // the 4.6 sequence with events
	{0, 6, 8, 1, 0, 2, 6, 8, 1, 6, 8}, // STOP, WAIT, array pipelined
	{0, 0, 6, 8, 10, 2, 6, 8},         // a second WAIT
}

// FuzzHostileGuest drives the real proxy with op programs against the
// fake daemon of every version (the CI-speed half; TestHostileGuestPCSCD
// is the real pcscd's).
func FuzzHostileGuest(f *testing.F) {
	for _, s := range hostileSeeds {
		for d := range hostileDialects {
			f.Add(byte(d), s)
		}
	}
	f.Fuzz(func(t *testing.T, dialect byte, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		d := hostileDialects[int(dialect)%len(hostileDialects)]
		daemon, ev := fakeDaemon(t, d.Host)
		got := runHostile(t, daemon.Socket, d, ev, ops)
		if l := leaks(got, hiddenATR); l != "" {
			t.Fatalf("%s guest on a %s host, ops %v: the guest received %s", d.Guest, d.Host, ops, l)
		}
	})
}

// TestHostileSplits writes the reproduced sequence's STOP_WAITING and
// GET_READERS_STATE split at every byte, in every dialect.
func TestHostileSplits(t *testing.T) {
	for _, d := range hostileDialects {
		t.Run(d.Guest.String()+"-on-"+d.Host.String(), func(t *testing.T) {
			daemon, _ := fakeDaemon(t, d.Host)
			for n := 1; n <= 16; n++ {
				got := runHostile(t, daemon.Socket, d, nil, []byte{0, 6, 8, 1, 2, 7, byte(n - 1), 8})
				if l := leaks(got, hiddenATR); l != "" {
					t.Fatalf("pieces of %d bytes: the guest received %s", n, l)
				}
			}
		})
	}
}
