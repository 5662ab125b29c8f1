package proxy

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Dialect is what each end of a proxied connection speaks once the
// CMD_VERSION exchange is over.
type Dialect struct {
	// Guest is the protocol whose messages the client sends and expects:
	// the version it proposed in the CMD_VERSION that was accepted, or
	// the daemon's if that is older (the CMD_VERSION handler of
	// src/winscard_svc.c, 2.5.1:393-436, and the client's fallback,
	// 2.5.1:src/winscard_clnt.c:593-642).
	Guest pcsc.Version
	// Host is the protocol the daemon serves the connection with.
	Host pcsc.Version
	// GuestSlots is the client library's PCSCLITE_MAX_READERS_CONTEXTS:
	// the records it reads for CMD_GET_READERS_STATE and the old WAIT
	// dump. Zero means DefaultSlots.
	GuestSlots int
	// HostSlots is what the daemon sends for those (Daemon.Readers).
	// Zero means DefaultSlots.
	HostSlots int
	// Daemon is the daemon's own protocol, as its reply to CMD_VERSION
	// named it; it may be newer than Host, the protocol it serves the
	// connection with. Zero means Host.
	Daemon pcsc.Version
}

func (d Dialect) slots() (guest, host int) {
	guest, host = d.GuestSlots, d.HostSlots
	if guest <= 0 {
		guest = pcsc.DefaultSlots
	}
	if host <= 0 {
		host = pcsc.DefaultSlots
	}
	return guest, host
}

// Translates reports whether the messages after the handshake differ
// between the ends, so that a byte relay would break the connection:
// CMD_GET_READER_EVENTS for a 4.5 client of a 4.4 daemon, the reader state
// API of a 4.6 client of an older daemon, or reader arrays of different
// sizes for clients of the old API.
func (d Dialect) Translates() bool {
	gs, hs := d.slots()
	switch {
	case d.Guest.Minor >= 5 && d.Host.Minor < 5:
		return true
	case d.Guest.NewAPI():
		return !d.Host.NewAPI()
	}
	return gs != hs
}

// Validate checks that the proxy can join the two ends. An error wrapping
// ErrUnknownProtocol means that the proxy cannot read the connection: one
// that a policy or audit log applies to must then be refused, never
// relayed as bytes.
func (d Dialect) Validate() error {
	gs, hs := d.slots()
	switch {
	case !d.Guest.Known() || !d.Host.Known():
		return fmt.Errorf("%w: cannot proxy protocol %s to %s: only 4.4, 4.5 and 4.6 are known", pcsc.ErrUnknownProtocol, d.Guest, d.Host)
	case d.Daemon != (pcsc.Version{}) && !d.Daemon.Known():
		return fmt.Errorf("%w: cannot proxy a daemon of protocol %s: only 4.4, 4.5 and 4.6 are known", pcsc.ErrUnknownProtocol, d.Daemon)
	case d.Host.NewAPI() && !d.Guest.NewAPI():
		return fmt.Errorf("pcsc: cannot proxy protocol %s to %s: a 4.6 daemon serves older clients itself", d.Guest, d.Host)
	case gs > pcsc.MaxSlots || hs > pcsc.MaxSlots:
		return fmt.Errorf("pcsc: reader arrays of %d and %d records: at most %d are supported", gs, hs, pcsc.MaxSlots)
	}
	return nil
}

// Call is one PC/SC call of a guest, for an audit log. It never holds
// payload bytes.
type Call struct {
	Command      uint32 // as the guest sent it
	Reader       string // the reader the call is about, when known
	RV           uint32 // the return code the guest got; see HasRV
	HasRV        bool   // false for replies without one (reader arrays)
	Duration     time.Duration
	RequestBytes int  // header, struct and data the guest sent
	ReplyBytes   int  // what the guest received
	Local        bool // answered by the proxy, without pcscd
	Event        bool // the registration's signal rather than a call
}

// Notice says what the proxy did instead of relaying, and why: a refusal
// by the policy, or something it could not translate faithfully.
type Notice struct {
	Command uint32
	Reader  string
	RV      uint32 // the return code the guest got, 0 if none
	Reason  string
}

// Config configures a Proxy.
type Config struct {
	Dialect Dialect
	// Guest is the state the guest's connections share. Nil means a
	// guest of its own, without a policy.
	Guest *Guest
	// OnCall, when set, is called once per completed call, from the
	// goroutine of either direction. It must not keep the *Call.
	OnCall func(*Call)
	// OnNotice, when set, is called for each refusal and each loss of
	// fidelity.
	OnNotice func(*Notice)
	// Up and Down, when set, count the bytes sent to the host and to the
	// guest.
	Up, Down *atomic.Uint64
	// Prefix holds bytes of the guest's stream that were read before the
	// proxy started; Requests handles them before reading more. At most
	// OpeningMax bytes.
	Prefix []byte
}

// queueLen bounds the requests in flight on one connection. libpcsclite
// waits for each reply before its next request, so at most a WAIT and the
// request after it are outstanding; a client that sends more without
// reading is not libpcsclite, and cardshare does not buffer for it.
const queueLen = 16

// proxyBufSize is each direction's read buffer. Every fixed unit fits
// (the largest is MaxRequestFixedSize, 288 bytes), and so does a default
// reader array (DefaultSlots records, 2944 bytes) in one read; APDU data
// and larger arrays pass through in pieces. It is held for as long as the
// connection is open, so it is as small as the common messages allow.
const proxyBufSize = 4 << 10

var proxyBufs = sync.Pool{New: func() any { return new([proxyBufSize]byte) }}

// zeroRecord pads reader arrays for a client that reads more records than
// the daemon sends.
var zeroRecord [pcsc.ReaderStateSize]byte

// entry is a request in flight: how its reply arrives and what the guest
// gets of it.
type entry struct {
	reply    pcsc.Reply // the host's reply to expect
	guestCmd uint32     // the command the guest sent
	sized    bool       // reply.Records is the last CMD_GET_READERS_STATE_SIZE answer
	out      int        // records the guest reads of an array reply
	swallow  bool       // the guest expects no reply: read it, send nothing
	arms     bool       // a WAIT: pcscd registers the connection when it gets here
	noReply  bool       // a WAIT of 4.6 on 4.6, answered by nothing but the signal
	stop     bool       // a STOP_WAITING sent while registered: one signal answers it
	racy     bool       // the signal could come during the reply (see isSignal)
	gen      uint32     // the registration a WAIT makes
	localN   int        // >0: no host reply; send local[:localN]
	local    [pcsc.ConnectSize]byte
	rv       uint32
	hasRV    bool
	reader   string
	start    time.Time
	reqBytes int
	repBytes int
}

// card is a card handle issued on the connection, for the audit log.
type card struct {
	h    uint32
	name string
}

// Proxy relays one pcsc-lite connection after its CMD_VERSION exchange,
// message by message: it translates between the dialects of the two ends
// and applies the guest's policy. Requests and Replies each run one
// direction, in goroutines of their own; Close ends its bookkeeping once
// both have returned.
type Proxy struct {
	guest, host io.ReadWriter
	d           Dialect
	gslots      int
	hslots      int
	g           *Guest
	onCall      func(*Call)
	onNotice    func(*Notice)
	up, down    *atomic.Uint64
	emulate     bool // answer CMD_GET_READER_EVENTS from the arrays seen
	prefix      []byte

	// Requests' own.
	reqs     pcsc.RequestScanner
	dropping bool // the current request was answered locally: drop its data
	reqCall  Call

	// Replies' own.
	reps      pcsc.ReplyScanner
	lastSize  int    // the last CMD_GET_READERS_STATE_SIZE answer
	set       uint64 // visible reader names of the array being read
	context   uint32 // the hContext pcscd holds for this connection, 0 if none
	repCall   Call
	badRecord bool // a malformed record was reported

	// mu guards the queue, the registration, cards, and the writes to
	// the guest that do not answer the head of the queue.
	mu    sync.Mutex
	q     [queueLen]entry
	qHead int
	qLen  int
	cards []card

	// The WAIT registration, kept apart from the queue: it is answered
	// by one 8-byte signal that pcscd may send between any two of its
	// writes (EHSignalEventToClients from the event thread,
	// src/eventhandler.c:114-131 in pcsc-lite 2.5.1; the cancel signal
	// from another connection's thread, src/winscard_svc.c:673-707; the
	// STOP_WAITING acknowledgement, 467-487).
	//
	// waiting is the guest's side: it sent a WAIT and has neither sent
	// STOP_WAITING nor been given the signal since. gen numbers its
	// WAITs.
	waiting bool
	gen     uint32
	// armed is the host's side: pcscd has registered the connection
	// (the WAIT reached the head of the queue) and not sent the signal
	// yet. armGen is the registration's gen.
	armed  bool
	armGen uint32
}

// New returns a proxy between the guest's and the host's ends of a
// connection whose CMD_VERSION exchange is done.
func New(guest, host io.ReadWriter, cfg Config) (*Proxy, error) {
	if err := cfg.Dialect.Validate(); err != nil {
		return nil, err
	}
	g := cfg.Guest
	if g == nil {
		g = NewGuest(nil)
	}
	p := &Proxy{
		guest: guest, host: host, d: cfg.Dialect, g: g,
		onCall: cfg.OnCall, onNotice: cfg.OnNotice, up: cfg.Up, down: cfg.Down,
	}
	if len(cfg.Prefix) > pcsc.OpeningMax {
		return nil, errors.New("pcsc: proxy prefix longer than an opening message")
	}
	p.prefix = cfg.Prefix
	p.gslots, p.hslots = cfg.Dialect.slots()
	p.reqs.Version = cfg.Dialect.Guest
	// The guest's reader events must follow the readers it sees; pcscd's
	// counter also moves for readers the policy hides.
	p.emulate = cfg.Dialect.Host.Minor < 5 || g.policy.Filters()
	return p, nil
}

// Close forgets the contexts issued on the connection, so that the guest's
// SCARD_CANCEL no longer reaches them. Call it after Requests and Replies
// have returned.
func (p *Proxy) Close() {
	if p.context != 0 {
		p.g.dropContext(p.context)
		p.context = 0
	}
}

// Requests relays the guest's requests to the host until the guest ends
// its stream (nil) or an error. An ErrProtocol means the guest broke the
// protocol, and the connection must close.
func (p *Proxy) Requests() error {
	bp := proxyBufs.Get().(*[proxyBufSize]byte)
	defer proxyBufs.Put(bp)
	buf := bp[:]
	r, w, out := 0, copy(buf, p.prefix), 0
	p.prefix = nil
	var rerr error
	for {
		err := p.requests(buf[:w], &r, &out)
		if ferr := p.toHost(buf[out:r]); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		r, w, out = compact(buf, r, w)
		if rerr != nil {
			return endOf(rerr)
		}
		var nr int
		nr, rerr = p.guest.Read(buf[w:])
		w += nr
	}
}

// requests handles the whole units in buf[*r:]. The units that go to the
// host stay where they are, to be sent together from *out; a unit that
// does not go sends those before it first.
func (p *Proxy) requests(buf []byte, r, out *int) error {
	for {
		u, err := p.reqs.Next(buf[*r:])
		if err != nil || u.Len == 0 {
			return err
		}
		keep, err := p.request(u, buf[*r:*r+u.Len])
		if err != nil {
			return err
		}
		if !keep {
			if err := p.toHost(buf[*out:*r]); err != nil {
				return err
			}
			*out = *r + u.Len
		}
		*r += u.Len
	}
}

// endOf is the result of a direction whose source failed with err: nil
// for the end of the stream.
func endOf(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// compact moves the unread bytes buf[r:w] to the front when the room
// after them could not hold a whole fixed unit.
func compact(buf []byte, r, w int) (int, int, int) {
	if r == w {
		return 0, 0, 0
	}
	if len(buf)-w < pcsc.MaxRequestFixedSize {
		copy(buf, buf[r:w])
		return 0, w - r, 0
	}
	return r, w, r
}

func (p *Proxy) toHost(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := p.host.Write(b)
	if p.up != nil {
		p.up.Add(uint64(n))
	}
	return err
}

func (p *Proxy) toGuest(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := p.guest.Write(b)
	if p.down != nil {
		p.down.Add(uint64(n))
	}
	return err
}

// request handles one unit of the guest's stream. It reports whether the
// unit goes to the host; msg may be rewritten in place.
func (p *Proxy) request(u pcsc.Unit, msg []byte) (bool, error) {
	if u.Kind == pcsc.KindData {
		return !p.dropping, nil
	}
	p.dropping = false
	cmd := u.Command
	body := msg[pcsc.HeaderSize:]
	if err := p.whileWaiting(cmd); err != nil {
		return false, err
	}
	e := entry{guestCmd: cmd, reqBytes: u.Len}
	switch cmd {
	case pcsc.CmdTransmit:
		e.reqBytes += int(le.Uint32(body[pcsc.OffTransmitSendLen:]))
	case pcsc.CmdControl:
		e.reqBytes += int(le.Uint32(body[pcsc.OffControlSendLen:]))
	}
	if p.onCall != nil {
		e.start = time.Now()
	}

	switch cmd {
	case pcsc.CmdVersion:
		return false, fmt.Errorf("%w: client sent CMD_VERSION after the handshake", pcsc.ErrProtocol)

	case pcsc.CmdConnect:
		name := pcsc.CString(body[pcsc.OffConnectReader : pcsc.OffConnectReader+pcsc.MaxReaderName-1])
		if !p.g.allows(name) {
			var rep [pcsc.ConnectSize]byte
			copy(rep[:], body)
			le.PutUint32(rep[pcsc.OffConnectCard:], 0)
			le.PutUint32(rep[pcsc.OffConnectProtocol:], 0)
			le.PutUint32(rep[pcsc.ConnectSize-4:], pcsc.ReturnUnknownReader)
			p.notice(cmd, string(name), pcsc.ReturnUnknownReader, "the guest's reader policy hides this reader")
			return false, p.answer(&e, rep[:], string(name))
		}
		if p.onCall != nil {
			e.reader = string(name)
		}

	case pcsc.CmdControl:
		if p.g.policy.DenyControl {
			p.dropping = true
			var rep [pcsc.ControlSize]byte
			copy(rep[:], body)
			le.PutUint32(rep[pcsc.OffControlReturned:], 0)
			le.PutUint32(rep[pcsc.ControlSize-4:], pcsc.ReturnUnsupported)
			p.notice(cmd, p.cardReader(le.Uint32(body)), pcsc.ReturnUnsupported, "the guest's policy denies SCardControl")
			return false, p.answer(&e, rep[:], "")
		}

	case pcsc.CmdCancel:
		if h := le.Uint32(body[pcsc.OffCancelContext:]); p.g.guards() && !p.g.OwnsContext(h) {
			var rep [pcsc.CancelSize]byte
			copy(rep[:], body)
			le.PutUint32(rep[pcsc.CancelSize-4:], pcsc.ReturnInvalidHandle)
			p.notice(cmd, "", pcsc.ReturnInvalidHandle, "the context was not issued to this guest")
			return false, p.answer(&e, rep[:], "")
		}

	case pcsc.CmdGetReaderEvents:
		if p.emulate {
			var rep [pcsc.ReaderEventsSize]byte
			le.PutUint32(rep[:], p.g.readerEvents())
			return false, p.answer(&e, rep[:], "")
		}

	case pcsc.CmdGetReadersStateSize:
		if !p.d.Host.NewAPI() {
			// The old API's array has a fixed size, which never shrinks
			// as libpcsclite 2.5 requires: it fails with
			// SCARD_E_UNSUPPORTED_FEATURE when the size shrinks
			// (src/winscard_clnt.c:3699-3713 in 2.5.1).
			var rep [pcsc.ArraySizeSize]byte
			le.PutUint32(rep[:], uint32(p.hslots))
			return false, p.answer(&e, rep[:], "")
		}

	case pcsc.CmdGetReadersStateArray:
		if !p.d.Host.NewAPI() {
			le.PutUint32(msg[4:], pcsc.CmdGetReadersState)
			e.reply, e.out = pcsc.Reply{Command: pcsc.CmdGetReadersState, Records: p.hslots}, p.hslots
			return true, p.push(&e, false)
		}
		e.reply, e.sized = pcsc.Reply{Command: cmd}, true
		return true, p.push(&e, false)

	case pcsc.CmdGetReadersState:
		e.reply, e.out = pcsc.Reply{Command: cmd, Records: p.hslots}, p.gslots
		return true, p.push(&e, false)

	case pcsc.CmdWaitReaderStateChange:
		switch {
		case p.d.Guest.NewAPI() && p.d.Host.NewAPI():
			e.noReply = true
		case p.d.Guest.NewAPI():
			// The old daemon dumps its array, which the 4.6 client does
			// not read: it asks for the array next.
			e.reply, e.swallow = pcsc.Reply{Command: cmd, Records: p.hslots}, true
		default:
			e.reply, e.out = pcsc.Reply{Command: cmd, Records: p.hslots}, p.gslots
		}
		return true, p.push(&e, true)

	case pcsc.CmdStopWaiting:
		return true, p.stopWaiting(&e)
	}
	e.reply = pcsc.Reply{Command: cmd}
	if p.onCall != nil && e.reader == "" && cmd != pcsc.CmdConnect && carriesCard(cmd) {
		e.reader = p.cardReader(le.Uint32(body[pcsc.OffCardHandle:]))
	}
	return true, p.push(&e, false)
}

// carriesCard reports whether the request struct of cmd opens with hCard.
func carriesCard(cmd uint32) bool {
	switch cmd {
	case pcsc.CmdReconnect, pcsc.CmdDisconnect, pcsc.CmdBeginTransaction, pcsc.CmdEndTransaction,
		pcsc.CmdTransmit, pcsc.CmdControl, pcsc.CmdStatus, pcsc.CmdGetAttrib, pcsc.CmdSetAttrib:
		return true
	}
	return false
}

// cardReader is the reader of card handle h, when the audit log tracks it.
func (p *Proxy) cardReader(h uint32) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.cards {
		if c.h == h {
			return c.name
		}
	}
	return ""
}

var errQueueFull = fmt.Errorf("%w: client sent %d requests without reading a reply", pcsc.ErrProtocol, queueLen)

// push queues e before its request goes to the host, so that the reply
// always finds it; registers marks a WAIT, which registers the connection
// for one signal.
func (p *Proxy) push(e *entry, registers bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if registers {
		p.waiting = true
		p.gen++
		e.arms, e.gen = true, p.gen
		if e.noReply && p.qLen == 0 {
			// Nothing is in flight before it: pcscd registers the
			// connection as soon as it reads the request.
			p.armed, p.armGen = true, e.gen
			return nil
		}
	}
	if p.qLen == queueLen {
		return errQueueFull
	}
	p.q[(p.qHead+p.qLen)%queueLen] = *e
	p.qLen++
	return nil
}

// answer sends the guest the reply rep that the proxy made for e's
// request: now if nothing is in flight, else after the replies before it.
func (p *Proxy) answer(e *entry, rep []byte, reader string) error {
	e.localN = copy(e.local[:], rep)
	e.rv, e.hasRV = le.Uint32(rep[len(rep)-4:]), len(rep) >= 8
	e.reader = reader
	p.mu.Lock()
	if p.qLen > 0 {
		defer p.mu.Unlock()
		if p.qLen == queueLen {
			return errQueueFull
		}
		p.q[(p.qHead+p.qLen)%queueLen] = *e
		p.qLen++
		return nil
	}
	err := p.toGuest(rep)
	p.mu.Unlock()
	p.audit(&p.reqCall, e, true)
	return err
}

func (p *Proxy) notice(cmd uint32, reader string, rv uint32, reason string) {
	if p.onNotice != nil {
		p.onNotice(&Notice{Command: cmd, Reader: reader, RV: rv, Reason: reason})
	}
}

func (p *Proxy) audit(c *Call, e *entry, local bool) {
	if p.onCall == nil {
		return
	}
	*c = Call{Command: e.guestCmd, Reader: e.reader, RV: e.rv, HasRV: e.hasRV,
		Duration: time.Since(e.start), RequestBytes: e.reqBytes, Local: local}
	if local {
		c.ReplyBytes = e.localN
	} else {
		c.ReplyBytes = e.repBytes
	}
	p.onCall(c)
}
