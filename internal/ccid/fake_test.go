package ccid

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/vscard"
)

// fakeHost is an in-memory PC/SC service: readers, cards with a hello-world
// applet, transactions that block, resets by "another program".
type fakeHost struct {
	mu      sync.Mutex
	cond    *sync.Cond
	readers []*fakeReader
	log     []string // "guest:INS" / "host:INS", in the order the card ran them
	changed chan struct{}
}

type fakeReader struct {
	name    string
	present bool
	atr     []byte
	events  uint32 // insertions and removals
	resets  int
	holder  *fakeCard // transaction owner
	respond func(cmd []byte) []byte
}

func newFakeHost() *fakeHost {
	h := &fakeHost{changed: make(chan struct{})}
	h.cond = sync.NewCond(&h.mu)
	return h
}

// helloApplet answers like internal/vcard's card: SELECT → 9000, 00 00 00
// 00 → "Hello world!" 9000; and INS B0 → P2*8 bytes (long responses), INS
// D6 → 9000 whatever the length (long commands).
func helloApplet(cmd []byte) []byte {
	switch {
	case len(cmd) >= 4 && cmd[1] == 0xd6:
		return []byte{0x90, 0}
	case len(cmd) >= 4 && cmd[1] == 0xa4:
		return []byte{0x90, 0}
	case len(cmd) >= 4 && cmd[1] == 0x00:
		return append([]byte("Hello world!"), 0x90, 0)
	case len(cmd) >= 4 && cmd[1] == 0xb0:
		return append(bytes.Repeat([]byte{0x5a}, int(cmd[3])*8), 0x90, 0)
	}
	return []byte{0x6d, 0}
}

func (h *fakeHost) update(f func()) {
	h.mu.Lock()
	f()
	close(h.changed)
	h.changed = make(chan struct{})
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *fakeHost) addReader(name string, atr []byte) *fakeReader {
	r := &fakeReader{name: name, respond: helloApplet}
	h.update(func() {
		h.readers = append(h.readers, r)
		if atr != nil {
			r.present, r.atr, r.events = true, atr, 1
		}
	})
	return r
}

func (h *fakeHost) unplug(name string) {
	h.update(func() {
		h.readers = slices.DeleteFunc(h.readers, func(r *fakeReader) bool { return r.name == name })
	})
}

func (h *fakeHost) insert(r *fakeReader, atr []byte) {
	h.update(func() { r.present, r.atr = true, atr; r.events++ })
}

func (h *fakeHost) remove(r *fakeReader) {
	h.update(func() { r.present, r.atr = false, nil; r.events++ })
}

func (h *fakeHost) reset(r *fakeReader) { h.update(func() { r.resets++ }) }

func (h *fakeHost) cardLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

func (h *fakeHost) EstablishContext() (HostContext, error) {
	return &fakeContext{h: h, cancel: make(chan struct{}, 1)}, nil
}

type fakeContext struct {
	h      *fakeHost
	cancel chan struct{}
}

func (c *fakeContext) ListReaders() ([]string, error) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	var names []string
	for _, r := range c.h.readers {
		names = append(names, r.name)
	}
	return names, nil
}

func (c *fakeContext) GetStatusChange(timeout time.Duration, states []ReaderState) error {
	deadline := time.After(timeout)
	for {
		c.h.mu.Lock()
		changed, any := c.h.changed, false
		// Like pcsc-lite through internal/scard: the states are filled
		// in only when something changed.
		next := slices.Clone(states)
		for i := range next {
			st := &next[i]
			var ev uint32
			if st.Reader == PnPNotification {
				ev = uint32(len(c.h.readers)) << 16
			} else if j := slices.IndexFunc(c.h.readers, func(r *fakeReader) bool { return r.name == st.Reader }); j < 0 {
				ev = StateUnknown
			} else if r := c.h.readers[j]; r.present {
				ev, st.ATR = StatePresent|r.events<<16, slices.Clone(r.atr)
			} else {
				ev, st.ATR = StateEmpty|r.events<<16, nil
			}
			if ev != st.CurrentState&^StateChanged {
				ev |= StateChanged
				any = true
			}
			st.EventState = ev
		}
		c.h.mu.Unlock()
		if any {
			copy(states, next)
			return nil
		}
		select {
		case <-changed:
		case <-deadline:
			return ErrTimeout
		case <-c.cancel:
			return ErrCancelled
		}
	}
}

func (c *fakeContext) Cancel() error {
	select {
	case c.cancel <- struct{}{}:
	default:
	}
	return nil
}

func (c *fakeContext) Release() error { return nil }

func (c *fakeContext) Connect(reader string, exclusive bool) (HostCard, error) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	for _, r := range c.h.readers {
		if r.name == reader {
			if !r.present {
				return nil, ErrRemovedCard
			}
			return &fakeCard{h: c.h, r: r, events: r.events, resets: r.resets, who: "guest"}, nil
		}
	}
	return nil, ErrReaderUnavailable
}

type fakeCard struct {
	h      *fakeHost
	r      *fakeReader
	events uint32
	resets int
	who    string
}

// check reports what pcsc-lite reports to a handle: removed, reset.
func (c *fakeCard) check() error {
	switch {
	case !c.r.present || c.r.events != c.events:
		return ErrRemovedCard
	case c.r.resets != c.resets:
		return ErrResetCard
	}
	return nil
}

func (c *fakeCard) Transmit(apdu, recv []byte) (int, error) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	for c.r.holder != nil && c.r.holder != c {
		c.h.cond.Wait()
	}
	if err := c.check(); err != nil {
		return 0, err
	}
	c.h.log = append(c.h.log, fmt.Sprintf("%s:%02X", c.who, apdu[1]))
	return copy(recv, c.r.respond(apdu)), nil
}

func (c *fakeCard) BeginTransaction() error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	for c.r.holder != nil && c.r.holder != c {
		c.h.cond.Wait()
	}
	if err := c.check(); err != nil {
		return err
	}
	c.r.holder = c
	return nil
}

func (c *fakeCard) EndTransaction() error {
	c.h.update(func() {
		if c.r.holder == c {
			c.r.holder = nil
		}
	})
	return nil
}

func (c *fakeCard) Reconnect() error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	if !c.r.present {
		return ErrRemovedCard
	}
	c.resets = c.r.resets
	return nil
}

func (c *fakeCard) Disconnect() error { return c.EndTransaction() }

// fakeQEMU is the QEMU side of a chardev: a VSCard peer.
type fakeQEMU struct {
	t    *testing.T
	conn net.Conn
	r    *vscard.Reader
}

func newFakeQEMU(t *testing.T, conn net.Conn) *fakeQEMU {
	q := &fakeQEMU{t: t, conn: conn, r: vscard.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	return q
}

func (q *fakeQEMU) send(typ vscard.Type, payload []byte) {
	q.t.Helper()
	if err := write(q.conn, typ, vscard.MinimalReaderID, payload); err != nil {
		q.t.Fatalf("fake QEMU: send %v: %v", typ, err)
	}
}

// next returns the next message that is not an Init.
func (q *fakeQEMU) next() vscard.Message {
	q.t.Helper()
	for {
		q.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := q.r.Next()
		if err != nil {
			q.t.Fatalf("fake QEMU: read: %v", err)
		}
		if m.Type != vscard.Init {
			m.Payload = bytes.Clone(m.Payload)
			return m
		}
	}
}

func (q *fakeQEMU) expect(typ vscard.Type) []byte {
	q.t.Helper()
	m := q.next()
	if m.Type != typ {
		q.t.Fatalf("fake QEMU: got %v (%d bytes), want %v", m.Type, len(m.Payload), typ)
	}
	return m.Payload
}

// open does QEMU's side of the opening: its unprompted Init, then the
// bridge's Init, answered.
func (q *fakeQEMU) open() {
	q.t.Helper()
	q.send(vscard.Init, vscard.NewInit().Append(nil))
	q.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := q.r.Next()
	if err != nil || m.Type != vscard.Init {
		q.t.Fatalf("fake QEMU: want the bridge's Init, got %v, %v", m.Type, err)
	}
	if p, err := vscard.ParseInit(m.Payload); err != nil || p.CheckMagic() != nil {
		q.t.Fatalf("fake QEMU: bad Init from the bridge: %v", err)
	}
}

// transmit sends a guest APDU and returns the bridge's answer.
func (q *fakeQEMU) transmit(apdu []byte) []byte {
	q.t.Helper()
	q.send(vscard.APDU, apdu)
	return q.expect(vscard.APDU)
}
