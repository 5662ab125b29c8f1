package nativepcsc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

// The hub is the one host event loop of a Source: it watches every reader
// and the PnP pseudo reader with SCardGetStatusChange, keeps the reader
// state array that guests read (READER_STATE records, pcsc-lite
// src/readers.h), counts card events per reader and reader events
// overall, and wakes the guest connections registered for an event.

// Reader states of a READER_STATE record, as pcscd's event handler sets
// them (pcsc-lite 2.5.1 src/eventhandler.c:270-417).
const (
	recordAbsent  = scard.StatusAbsent
	recordPresent = scard.StatusPresent | scard.StatusPowered | scard.StatusNegotiable
	recordMute    = scard.StatusPresent | scard.StatusSwallowed
	recordUnknown = scard.StatusUnknown
)

// slot is one reader of the array. Readers keep their slot while they
// exist; a new reader takes the first free one, as in pcscd.
type slot struct {
	name      string // what guests see: the host's name, cut to MaxReaderName-1 bytes
	host      string // the host's name
	used      bool
	state     uint32 // record readerState
	sharing   int32  // 0 none, 1 shared, -1 exclusive
	atr       []byte
	protocol  uint32 // set by CONNECT and RECONNECT, cleared by card events
	events    uint32 // card events, 0..0xFFFF
	hostEvent uint32 // the host's last dwEventState, for the next wait
	known     bool   // hostEvent has been read once
}

type hub struct {
	lib  scard.Library
	log  *slog.Logger
	cfg  *Config
	feat scard.Features

	mu           sync.Mutex
	slots        []slot
	arraySize    int    // records for CMD_GET_READERS_STATE_SIZE: grows, never shrinks
	readerEvents uint32 // CMD_GET_READER_EVENTS: 1.., +1 per reader added or removed
	waiters      map[*conn]struct{}
	gen          uint64 // +1 each time the host service is lost
	pnpState     uint32
	lastErr      error

	ctx   context.Context
	stop  context.CancelFunc
	done  chan struct{}
	ready chan struct{} // closed after the first scan, whatever its outcome
	host  scard.Context // the loop's context, for close to cancel its wait
}

func newHub(lib scard.Library, cfg *Config, log *slog.Logger) *hub {
	ctx, stop := context.WithCancel(context.Background())
	return &hub{
		lib: lib, cfg: cfg, log: log, feat: lib.Features(),
		arraySize:    pcsc.DefaultSlots,
		readerEvents: 1,
		waiters:      make(map[*conn]struct{}),
		ctx:          ctx, stop: stop,
		done:  make(chan struct{}),
		ready: make(chan struct{}),
	}
}

// run is the event loop. It returns when close is called.
func (h *hub) run() {
	defer close(h.done)
	var hostCtx scard.Context
	have := false
	backoff := h.cfg.MinPoll
	readyOnce := sync.OnceFunc(func() { close(h.ready) })
	defer readyOnce()
	relist := true
	for h.ctx.Err() == nil {
		if !have {
			c, err := h.lib.EstablishContext(scard.ScopeSystem)
			if err != nil {
				h.lost(err)
				readyOnce()
				if w, ok := h.lib.(scard.ServiceWaiter); ok && errors.Is(err, scard.NoService) {
					w.WaitService(h.cfg.MaxPoll)
				} else {
					h.sleep(backoff)
					backoff = min(2*backoff, h.cfg.MaxPoll)
				}
				continue
			}
			hostCtx, have, relist = c, true, true
			h.mu.Lock()
			h.host = c
			h.lastErr = nil
			h.mu.Unlock()
			backoff = h.cfg.MinPoll
		}
		if relist || !h.feat.PnP {
			readers, err := h.lib.ListReaders(hostCtx)
			if err != nil {
				readyOnce()
				h.dropContext(hostCtx, err)
				have = false
				continue
			}
			h.setReaders(readers)
			relist = false
		}
		start := time.Now()
		states := h.waitStates()
		if len(states) == 0 {
			readyOnce()
			// No readers and no PnP reader to watch (macOS): poll the list.
			h.sleep(h.cfg.MaxPoll / 2)
			continue
		}
		if len(states) == 1 && h.feat.PnP {
			readyOnce() // no reader whose state the wait must fill in
		}
		err := h.lib.GetStatusChange(hostCtx, h.cfg.MaxPoll, states)
		changed := false
		switch {
		case err == nil:
			var readersChanged bool
			changed, readersChanged = h.apply(states)
			relist = readersChanged
		case errors.Is(err, scard.Timeout):
		case errors.Is(err, scard.Cancelled):
		case errors.Is(err, scard.UnknownReader), errors.Is(err, scard.ReaderUnavailable):
			relist = true
		default:
			readyOnce()
			h.dropContext(hostCtx, err)
			have = false
			continue
		}
		// Ready once the first wait, whose states were all unaware and so
		// returned at once, has filled in the records.
		readyOnce()
		if changed {
			h.signal(pcsc.ReturnSuccess)
		}
		if !changed && !relist {
			// A wait that returned early without a change we can see: Wine
			// does not block, and neither does macOS without PnP. Bound
			// the rate.
			if d := h.cfg.MinPoll - time.Since(start); d > 0 {
				h.sleep(d)
			}
		}
	}
	if have {
		h.lib.ReleaseContext(hostCtx)
	}
}

func (h *hub) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.ctx.Done():
	}
}

// dropContext gives up a host context after err, and reports the readers
// gone when the service itself is gone.
func (h *hub) dropContext(c scard.Context, err error) {
	h.lib.ReleaseContext(c)
	h.lost(err)
	h.sleep(h.cfg.MinPoll)
}

// lost records that the host service failed with err: its readers are
// gone, and contexts of the old service are useless.
func (h *hub) lost(err error) {
	h.mu.Lock()
	first := h.lastErr == nil
	h.lastErr = err
	h.host = 0
	h.gen++
	gone := h.setReadersLocked(nil)
	h.mu.Unlock()
	if first {
		h.log.Warn("host PC/SC unavailable", "library", h.lib.String(), "err", err)
	}
	if gone {
		h.signal(pcsc.ReturnSuccess)
	}
}

// generation returns the service generation: host contexts established in
// an older one are stale.
func (h *hub) generation() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gen
}

// guestName cuts a host reader name to what a READER_STATE record holds,
// at a rune boundary.
func guestName(host string) string {
	if len(host) < pcsc.MaxReaderName {
		return host
	}
	n := pcsc.MaxReaderName - 1
	for n > 0 && !utf8.RuneStart(host[n]) {
		n--
	}
	return host[:n]
}

// setReaders makes the slots hold exactly readers, and signals waiters if
// that changed anything.
func (h *hub) setReaders(readers []string) {
	h.mu.Lock()
	changed := h.setReadersLocked(readers)
	h.mu.Unlock()
	if changed {
		h.signal(pcsc.ReturnSuccess)
	}
}

func (h *hub) setReadersLocked(readers []string) bool {
	want := make(map[string]bool, len(readers))
	for _, r := range readers {
		want[r] = true
	}
	changed := false
	for i := range h.slots {
		if h.slots[i].used && !want[h.slots[i].host] {
			h.slots[i] = slot{}
			changed = true
			h.bumpReaderEvents()
		}
	}
	for _, r := range readers {
		if h.slotOf(r) >= 0 {
			continue
		}
		i := 0
		for i < len(h.slots) && h.slots[i].used {
			i++
		}
		if i == len(h.slots) {
			if len(h.slots) >= pcsc.MaxSlots {
				h.log.Warn("too many readers; ignoring one", "reader", r)
				continue
			}
			h.slots = append(h.slots, slot{})
		}
		h.slots[i] = slot{name: guestName(r), host: r, used: true, state: recordUnknown}
		changed = true
		h.bumpReaderEvents()
	}
	for len(h.slots) > h.arraySize {
		h.arraySize += pcsc.DefaultSlots
	}
	return changed
}

// bumpReaderEvents counts a reader added or removed: pcscd's int16_t
// ReaderEvents, which starts at 1 and wraps back to 1 (pcsc-lite 2.5.1
// src/readerfactory.c:78, 437-440).
func (h *hub) bumpReaderEvents() {
	h.readerEvents++
	if h.readerEvents > 0x7FFF {
		h.readerEvents = 1
	}
}

func (h *hub) slotOf(host string) int {
	for i := range h.slots {
		if h.slots[i].used && h.slots[i].host == host {
			return i
		}
	}
	return -1
}

// waitStates builds the states of the next wait: every reader with the
// state the host last reported (so that a real SCardGetStatusChange
// blocks), then the PnP reader.
func (h *hub) waitStates() []scard.ReaderState {
	h.mu.Lock()
	defer h.mu.Unlock()
	var states []scard.ReaderState
	for _, s := range h.slots {
		if s.used {
			states = append(states, scard.ReaderState{Reader: s.host, CurrentState: s.hostEvent &^ scard.StateChanged})
		}
	}
	if h.feat.PnP {
		states = append(states, scard.ReaderState{Reader: scard.PnPNotification, CurrentState: h.pnpState &^ scard.StateChanged})
	}
	return states
}

// apply takes the result of a wait. It reports whether a record changed,
// and whether the set of readers may have.
func (h *hub) apply(states []scard.ReaderState) (changed, readers bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range states {
		if st.Reader == scard.PnPNotification {
			if st.EventState&^scard.StateChanged != h.pnpState&^scard.StateChanged {
				readers = true
			}
			h.pnpState = st.EventState
			continue
		}
		i := h.slotOf(st.Reader)
		if i < 0 {
			continue
		}
		if h.update(&h.slots[i], st) {
			changed = true
		}
	}
	return changed, readers
}

// update sets a slot from the host's dwEventState and ATR, and reports
// whether the record a guest sees changed.
func (h *hub) update(s *slot, st scard.ReaderState) bool {
	ev := st.EventState
	state := uint32(recordUnknown)
	switch {
	case ev&(scard.StateUnknown|scard.StateUnavailable|scard.StateIgnore) != 0:
	case ev&scard.StatePresent != 0 && ev&scard.StateMute != 0:
		state = recordMute
	case ev&scard.StatePresent != 0:
		state = recordPresent
	case ev&scard.StateEmpty != 0:
		state = recordAbsent
	}
	var sharing int32
	switch {
	case ev&scard.StateExclusive != 0:
		sharing = -1
	case ev&scard.StateInUse != 0:
		sharing = 1
	}
	atr := st.ATR
	if state&scard.StatusPresent == 0 {
		atr = nil
	}
	if len(atr) > pcsc.MaxATRSize {
		atr = atr[:pcsc.MaxATRSize]
	}
	// A card event: presence changed, or the host counted one (a card
	// swapped between two waits).
	wasPresent := s.state&scard.StatusPresent != 0
	isPresent := state&scard.StatusPresent != 0
	event := s.known && (wasPresent != isPresent ||
		h.feat.EventCounts && ev>>16 != s.hostEvent>>16 && (isPresent || wasPresent))
	if !s.known && isPresent {
		event = true // pcscd counts the card found at start
	}
	changed := event || state != s.state || sharing != s.sharing || !bytes.Equal(atr, s.atr)
	if event {
		s.events = (s.events + 1) & 0xFFFF
		s.protocol = scard.ProtocolUndefined
	}
	s.state, s.sharing, s.hostEvent, s.known = state, sharing, ev, true
	s.atr = append(s.atr[:0], atr...)
	return changed
}

// setProtocol records the protocol a card was connected with: pcscd keeps
// it in the reader's record, where SCardStatus reads it.
func (h *hub) setProtocol(reader string, p uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.slots {
		if h.slots[i].used && h.slots[i].name == reader && h.slots[i].protocol != p {
			h.slots[i].protocol = p
		}
	}
}

// hostName returns the host's name of the reader a guest calls name.
func (h *hub) hostName(name string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.slots {
		if s.used && s.name == name {
			return s.host, true
		}
	}
	return "", false
}

// appendRecords appends n READER_STATE records: the first n slots, with
// all-zero records for unused ones (as pcsc-lite 2.5 pads old clients'
// arrays, src/winscard_svc.c:938-948).
func (h *hub) appendRecords(b []byte, n int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.appendRecordsLocked(b, n)
}

func (h *hub) appendRecordsLocked(b []byte, n int) []byte {
	for i := range n {
		var r pcsc.ReaderState
		if i < len(h.slots) && h.slots[i].used {
			s := &h.slots[i]
			copy(r.Name[:], s.name)
			r.EventCounter = s.events
			r.State = s.state
			r.Sharing = s.sharing
			r.ATRLength = uint32(copy(r.ATR[:], s.atr))
			r.Protocol = s.protocol
		}
		b, _ = binary.Append(b, binary.LittleEndian, &r)
	}
	return b
}

// size returns the array size of the 4.6 API.
func (h *hub) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.arraySize
}

func (h *hub) events() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readerEvents
}

// unregister removes c and reports whether it was still waiting: only
// then does it get a signal (pcsc-lite src/eventhandler.c:81-109).
func (h *hub) unregister(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.waiters[c]
	delete(h.waiters, c)
	return ok
}

// signal sends every waiting connection its one signal and clears the
// list, as EHSignalEventToClients does (src/eventhandler.c:114-131).
func (h *hub) signal(rv uint32) {
	h.mu.Lock()
	ws := h.waiters
	if len(ws) == 0 {
		h.mu.Unlock()
		return
	}
	h.waiters = make(map[*conn]struct{})
	h.mu.Unlock()
	for c := range ws {
		go c.sendSignal(rv)
	}
}

// close stops the loop and waits for it.
func (h *hub) close() {
	h.stop()
	h.mu.Lock()
	hostCtx := h.host
	h.mu.Unlock()
	if hostCtx != 0 {
		h.lib.Cancel(hostCtx) // ends a blocking wait
	}
	<-h.done
}
