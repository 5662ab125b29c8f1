package scardtest

import (
	"slices"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/scard"
)

// Fake is an in-memory scard.Library: readers that hold cards, contexts
// and card handles with pcsc-lite's error codes, and a blocking
// GetStatusChange. Its cards answer every APDU with the APDU itself and
// 90 00, except an APDU starting EE, whose bytes 1-3 (big-endian) give
// the length of a response of counting bytes to send instead. Control
// echoes its input. It is meant for tests of the daemon end, not as a
// model of a reader.
type Fake struct {
	// Feat is what Features returns; NewFake sets pcsc-lite's.
	Feat scard.Features

	mu       sync.Mutex
	readers  []*fakeReader
	contexts map[scard.Context]chan struct{} // closed by Cancel
	cards    map[scard.Card]*fakeCard
	next     uintptr
	changed  chan struct{} // closed and replaced on every change
	calls    int
}

type fakeReader struct {
	name   string
	atr    []byte // nil: empty
	events uint32
	users  int
	serial int // +1 per card inserted
}

type fakeCard struct {
	ctx    scard.Context
	reader *fakeReader
	atr    []byte
	serial int // the card connected to; another means it was swapped
}

// NewFake returns a Fake with the named readers, all empty.
func NewFake(readers ...string) *Fake {
	f := &Fake{
		Feat:     scard.Features{PnP: true, EventCounts: true, BlockingWait: true},
		contexts: make(map[scard.Context]chan struct{}),
		cards:    make(map[scard.Card]*fakeCard),
		changed:  make(chan struct{}),
	}
	for _, r := range readers {
		f.readers = append(f.readers, &fakeReader{name: r})
	}
	return f
}

var _ scard.Library = (*Fake)(nil)

func (f *Fake) String() string           { return "fake PC/SC" }
func (f *Fake) Features() scard.Features { return f.Feat }

// notify wakes every waiting GetStatusChange; f.mu is held.
func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *Fake) reader(name string) *fakeReader {
	for _, r := range f.readers {
		if r.name == name {
			return r
		}
	}
	return nil
}

// Insert puts a card with atr into reader.
func (f *Fake) Insert(reader string, atr []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.reader(reader); r != nil {
		r.atr = append([]byte{}, atr...)
		r.serial++
		r.events++
		f.notify()
	}
}

// Remove takes the card out of reader.
func (f *Fake) Remove(reader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.reader(reader); r != nil && r.atr != nil {
		r.atr = nil
		r.events++
		f.notify()
	}
}

// AddReader plugs in a reader; RemoveReader unplugs one.
func (f *Fake) AddReader(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers = append(f.readers, &fakeReader{name: name})
	f.notify()
}

func (f *Fake) RemoveReader(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers = slices.DeleteFunc(f.readers, func(r *fakeReader) bool { return r.name == name })
	f.notify()
}

// Contexts returns the contexts established and not released.
func (f *Fake) Contexts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.contexts)
}

func (f *Fake) EstablishContext(scope uint32) (scard.Context, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	c := scard.Context(f.next)
	f.contexts[c] = make(chan struct{})
	return c, nil
}

func (f *Fake) ReleaseContext(ctx scard.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.contexts[ctx]; !ok {
		return scard.InvalidHandle
	}
	delete(f.contexts, ctx)
	for h, c := range f.cards {
		if c.ctx == ctx {
			c.reader.users--
			delete(f.cards, h)
		}
	}
	return nil
}

func (f *Fake) Cancel(ctx scard.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.contexts[ctx]
	if !ok {
		return scard.InvalidHandle
	}
	close(ch)
	f.contexts[ctx] = make(chan struct{})
	return nil
}

func (f *Fake) ListReaders(ctx scard.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.contexts[ctx]; !ok {
		return nil, scard.InvalidHandle
	}
	var names []string
	for _, r := range f.readers {
		names = append(names, r.name)
	}
	return names, nil
}

// eventState is what SCardGetStatusChange reports for r.
func (r *fakeReader) eventState() uint32 {
	s := r.events << 16
	switch {
	case r.atr == nil:
		s |= scard.StateEmpty
	default:
		s |= scard.StatePresent
		if r.users > 0 {
			s |= scard.StateInUse
		}
	}
	return s
}

func (f *Fake) GetStatusChange(ctx scard.Context, timeout time.Duration, states []scard.ReaderState) error {
	var deadline <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		f.mu.Lock()
		cancel, ok := f.contexts[ctx]
		if !ok {
			f.mu.Unlock()
			return scard.InvalidHandle
		}
		changed := false
		for i := range states {
			s := &states[i]
			var ev uint32
			if s.Reader == scard.PnPNotification {
				ev = uint32(len(f.readers)) << 16
			} else {
				r := f.reader(s.Reader)
				if r == nil {
					f.mu.Unlock()
					return scard.UnknownReader
				}
				ev = r.eventState()
				s.ATR = append(s.ATR[:0], r.atr...)
			}
			if ev != s.CurrentState&^scard.StateChanged {
				ev |= scard.StateChanged
				changed = true
			}
			s.EventState = ev
		}
		wait := f.changed
		f.mu.Unlock()
		if changed {
			return nil
		}
		select {
		case <-wait:
		case <-cancel:
			return scard.Cancelled
		case <-deadline:
			return scard.Timeout
		}
	}
}

func (f *Fake) Connect(ctx scard.Context, reader string, share, protocols uint32) (scard.Card, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.contexts[ctx]; !ok {
		return 0, 0, scard.InvalidHandle
	}
	r := f.reader(reader)
	switch {
	case r == nil:
		return 0, 0, scard.UnknownReader
	case r.atr == nil:
		return 0, 0, scard.NoSmartcard
	}
	f.next++
	h := scard.Card(f.next)
	f.cards[h] = &fakeCard{ctx: ctx, reader: r, atr: r.atr, serial: r.serial}
	r.users++
	f.notify()
	return h, scard.ProtocolT1, nil
}

// card returns the card of h, or the error a call on it gets.
func (f *Fake) card(h scard.Card) (*fakeCard, error) {
	c, ok := f.cards[h]
	switch {
	case !ok:
		return nil, scard.InvalidHandle
	case c.reader.atr == nil || c.reader.serial != c.serial:
		return nil, scard.RemovedCard
	}
	return c, nil
}

func (f *Fake) Reconnect(h scard.Card, share, protocols, init uint32) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.card(h)
	return scard.ProtocolT1, err
}

func (f *Fake) Disconnect(h scard.Card, disposition uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.cards[h]
	if !ok {
		return scard.InvalidHandle
	}
	c.reader.users--
	delete(f.cards, h)
	f.notify()
	return nil
}

func (f *Fake) BeginTransaction(h scard.Card) error { return f.check(h) }

func (f *Fake) EndTransaction(h scard.Card, disposition uint32) error { return f.check(h) }

func (f *Fake) check(h scard.Card) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	_, err := f.card(h)
	return err
}

func (f *Fake) Transmit(h scard.Card, send scard.IORequest, apdu, recv []byte) (int, uint32, error) {
	if err := f.check(h); err != nil {
		return 0, 0, err
	}
	var resp []byte
	if len(apdu) >= 4 && apdu[0] == 0xEE {
		n := int(apdu[1])<<16 | int(apdu[2])<<8 | int(apdu[3])
		if n > len(recv) {
			return n, 0, scard.InsufficientBuffer
		}
		for i := range n {
			recv[i] = byte(i)
		}
		return n, send.Protocol, nil
	}
	resp = append(append(resp, apdu...), 0x90, 0x00)
	if len(resp) > len(recv) {
		return len(resp), 0, scard.InsufficientBuffer
	}
	return copy(recv, resp), send.Protocol, nil
}

func (f *Fake) Control(h scard.Card, code uint32, in, out []byte) (int, error) {
	if err := f.check(h); err != nil {
		return 0, err
	}
	if len(in) > len(out) {
		return len(in), scard.InsufficientBuffer
	}
	return copy(out, in), nil
}

func (f *Fake) Status(h scard.Card) (scard.CardStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.card(h)
	if err != nil {
		return scard.CardStatus{}, err
	}
	return scard.CardStatus{Reader: c.reader.name, State: scard.StatusPresent | scard.StatusPowered | scard.StatusSpecific,
		Protocol: scard.ProtocolT1, ATR: slices.Clone(c.atr)}, nil
}

// AttrATR is the one attribute the fake has: SCARD_ATTR_ATR_STRING.
const AttrATR = 0x00090303

func (f *Fake) GetAttrib(h scard.Card, id uint32, buf []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.card(h)
	switch {
	case err != nil:
		return 0, err
	case id != AttrATR:
		return 0, scard.UnsupportedFeature
	case len(c.atr) > len(buf):
		return len(c.atr), scard.InsufficientBuffer
	}
	return copy(buf, c.atr), nil
}

func (f *Fake) SetAttrib(h scard.Card, id uint32, value []byte) error {
	if err := f.check(h); err != nil {
		return err
	}
	return scard.UnsupportedFeature
}
