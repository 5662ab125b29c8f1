package nativepcsc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

var le = binary.LittleEndian

// errForeignHandle ends a connection that names a card it does not own,
// as pcscd does ("Client failed to authenticate", src/winscard_svc.c:1129-1153).
var errForeignHandle = errors.New("nativepcsc: guest used a card handle it does not own")

// conn is one guest connection: what pcscd's ContextThread serves.
type conn struct {
	s   *Source
	h   *hub
	nc  net.Conn
	r   *bufio.Reader
	sc  pcsc.RequestScanner
	buf [pcsc.HeaderSize + pcsc.GetSetSize]byte // one request's header and struct

	// version is the protocol the connection speaks, once CMD_VERSION was
	// accepted: the guest's own 4.4, 4.5 or 4.6.
	version pcsc.Version

	// contexts and cards are the connection's handles; only its own
	// goroutine touches them.
	contexts map[uint32]*gcontext
	cards    map[uint32]*gcard

	wmu    sync.Mutex // one message at a time on the wire
	out    []byte     // reply being built; wmu or the serving goroutine
	served int        // requests, for the close log
}

// gcontext is a guest context. Its host context is established when a
// call first needs one (CONNECT): guests that only list readers and wait
// for events, most of them, cost the host nothing.
type gcontext struct {
	handle uint32
	conn   *conn
	host   scard.Context
	has    bool
	gen    uint64 // the hub's generation when host was established
}

// gcard is a guest card handle.
type gcard struct {
	handle uint32
	ctx    *gcontext
	host   scard.Card
	reader string // the guest's name of the reader
}

func newConn(s *Source, nc net.Conn, opening []byte) *conn {
	return &conn{
		s: s, h: s.hub, nc: nc,
		r:        bufio.NewReaderSize(io.MultiReader(bytes.NewReader(opening), nc), 512),
		contexts: make(map[uint32]*gcontext),
		cards:    make(map[uint32]*gcard),
		out:      make([]byte, 0, 64),
	}
}

// serve reads and answers requests until the guest leaves or breaks the
// protocol, then releases everything the connection holds.
func (c *conn) serve() (err error) {
	start := time.Now()
	defer func() {
		c.h.unregister(c)
		c.nc.Close()
		c.release()
		c.s.remove(c)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = nil
		}
		if err != nil {
			c.s.log.Warn("guest connection closed", "err", err, "requests", c.served, "duration", time.Since(start))
		} else {
			c.s.log.Debug("guest connection closed", "requests", c.served, "duration", time.Since(start))
		}
	}()
	var open [pcsc.OpeningMax]byte
	o, raw, err := pcsc.ReadOpening(c.r, &open)
	if err != nil {
		return err
	}
	c.s.log.Debug("guest connection opened", "command", pcsc.CommandName(o.Command), "protocol", o.Version.String())
	c.sc.Version = pcsc.V44
	if o.Command == pcsc.CmdCancel {
		// SCardCancel's own connection: it sends nothing else.
		var cs pcsc.CancelStruct
		binary.Decode(raw[pcsc.HeaderSize:], le, &cs)
		if err := c.cancel(&cs); err != nil {
			return err
		}
	} else if err := c.negotiate(o.Version); err != nil {
		return err
	}
	for {
		cmd, body, err := c.readRequest()
		if err != nil {
			return err
		}
		c.served++
		if err := c.dispatch(cmd, body); err != nil {
			return err
		}
	}
}

// negotiate answers CMD_VERSION. A guest of 4.4, 4.5 or 4.6 is answered
// with its own version, as a daemon of that version answers; others get
// pcsc-lite 2.5's rejection, {4, 6, SCARD_E_SERVICE_STOPPED}, after which
// a 2.4.1+ client proposes 4.6 on the same connection (sheet §5.2).
func (c *conn) negotiate(v pcsc.Version) error {
	r := pcsc.VersionReply{Version: v}
	if !v.Known() {
		r = pcsc.VersionReply{Version: pcsc.V46, RV: pcsc.ReturnServiceStopped}
	} else {
		c.version = v
		c.sc.Version = v
	}
	return c.write(pcsc.AppendVersionReply(c.out[:0], r))
}

// readRequest reads one request's header and struct into c.buf, framed
// and checked by the codec's scanner: a command the connection's
// protocol lacks, a struct of the wrong size or a length over pcsc-lite's
// limits is an error before anything more is read.
func (c *conn) readRequest() (uint32, []byte, error) {
	if _, err := io.ReadFull(c.r, c.buf[:pcsc.HeaderSize]); err != nil {
		return 0, nil, err
	}
	u, err := c.sc.Next(c.buf[:pcsc.HeaderSize])
	if err != nil {
		return 0, nil, err
	}
	if u.Len == 0 {
		n := pcsc.HeaderSize + int(le.Uint32(c.buf[:])) // checked by Next: the command's struct size
		if _, err := io.ReadFull(c.r, c.buf[pcsc.HeaderSize:n]); err != nil {
			return 0, nil, noEOF(err)
		}
		if u, err = c.sc.Next(c.buf[:n]); err != nil {
			return 0, nil, err
		}
	}
	if u.Kind != pcsc.KindRequest || u.Len > len(c.buf) {
		return 0, nil, fmt.Errorf("%w: unexpected unit", pcsc.ErrProtocol)
	}
	return u.Command, c.buf[pcsc.HeaderSize:u.Len], nil
}

// readData reads the n bytes of variable data after a TRANSMIT or CONTROL
// struct into b (n ≤ MaxBufferSizeExtended, checked by the scanner).
func (c *conn) readData(b []byte, n int) ([]byte, error) {
	b = b[:n]
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, noEOF(err)
	}
	if n > 0 {
		if _, err := c.sc.Next(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// write sends one message.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

func (c *conn) writeLocked(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_, err := c.nc.Write(b)
	return err
}

// reply encodes v (a pointer to a codec struct) and sends it.
func (c *conn) reply(v any) error {
	b, err := binary.Append(c.out[:0], le, v)
	if err != nil {
		return err
	}
	c.out = b[:0]
	return c.write(b)
}

// sendSignal sends the one 8-byte wait_reader_state_change a WAIT
// registration gets: an event (rv 0), a cancel, or STOP's answer.
func (c *conn) sendSignal(rv uint32) {
	var b [pcsc.WaitSize]byte
	le.PutUint32(b[4:], rv)
	if c.write(b[:]) != nil {
		c.nc.Close()
	}
}

func (c *conn) dispatch(cmd uint32, body []byte) error {
	switch cmd {
	case pcsc.CmdVersion:
		var v pcsc.VersionStruct
		binary.Decode(body, le, &v)
		return c.negotiate(pcsc.Version{Major: v.Major, Minor: v.Minor})
	case pcsc.CmdEstablishContext:
		return c.establish(body)
	case pcsc.CmdReleaseContext:
		return c.releaseContext(body)
	case pcsc.CmdCancel:
		var cs pcsc.CancelStruct
		binary.Decode(body, le, &cs)
		return c.cancel(&cs)
	case pcsc.CmdGetReadersState:
		return c.sendArray(pcsc.DefaultSlots)
	case pcsc.CmdGetReadersStateSize:
		var b [pcsc.ArraySizeSize]byte
		le.PutUint32(b[:], uint32(c.h.size()))
		return c.write(b[:])
	case pcsc.CmdGetReadersStateArray:
		return c.sendArray(c.h.size())
	case pcsc.CmdWaitReaderStateChange:
		return c.wait()
	case pcsc.CmdStopWaiting:
		if c.h.unregister(c) {
			var b [pcsc.WaitSize]byte
			return c.write(b[:])
		}
		return nil // the signal is already on its way
	case pcsc.CmdGetReaderEvents:
		return c.reply(&pcsc.ReaderEventsStruct{ReaderEvents: c.h.events()})
	}
	return c.cardCall(cmd, body)
}

// sendArray sends n reader records (CMD_GET_READERS_STATE: 16 whatever
// the protocol, as pcsc-lite 2.5 does for the old API).
func (c *conn) sendArray(n int) error {
	b := c.h.appendRecords(make([]byte, 0, n*pcsc.ReaderStateSize), n)
	return c.write(b)
}

// wait registers for one event signal; old clients (4.4, 4.5) get the
// 16-record dump at once, written before any signal can be.
func (c *conn) wait() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var dump []byte
	c.h.mu.Lock()
	c.h.waiters[c] = struct{}{}
	if c.version.Minor < 6 {
		dump = c.h.appendRecordsLocked(make([]byte, 0, pcsc.DefaultSlots*pcsc.ReaderStateSize), pcsc.DefaultSlots)
	}
	c.h.mu.Unlock()
	if dump == nil {
		return nil
	}
	return c.writeLocked(dump)
}

// establish serves SCARD_ESTABLISH_CONTEXT. The host context comes later.
func (c *conn) establish(body []byte) error {
	var es pcsc.EstablishStruct
	binary.Decode(body, le, &es)
	es.Context = 0
	switch {
	case es.Scope > scard.ScopeGlobal:
		es.RV = uint32(scard.InvalidValue) // src/winscard.c:190-213
	case len(c.contexts) >= c.s.cfg.MaxContexts:
		es.RV = uint32(scard.NoMemory)
	default:
		gc := &gcontext{handle: c.s.newHandle(), conn: c}
		c.s.mu.Lock()
		c.s.contexts[gc.handle] = gc
		c.s.mu.Unlock()
		c.contexts[gc.handle] = gc
		es.Context, es.RV = gc.handle, 0
	}
	return c.reply(&es)
}

func (c *conn) releaseContext(body []byte) error {
	var rs pcsc.ReleaseStruct
	binary.Decode(body, le, &rs)
	gc, ok := c.contexts[rs.Context]
	if !ok {
		rs.RV = uint32(scard.InvalidHandle)
		return c.reply(&rs)
	}
	rs.RV = uint32(scard.CodeOf(c.dropContext(gc)))
	return c.reply(&rs)
}

// dropContext releases a guest context, its cards and its host context.
func (c *conn) dropContext(gc *gcontext) error {
	for h, card := range c.cards {
		if card.ctx == gc {
			delete(c.cards, h)
			c.s.freeHandle(h)
		}
	}
	delete(c.contexts, gc.handle)
	c.s.freeHandle(gc.handle)
	if !gc.has {
		return nil
	}
	gc.has = false
	// Releasing a context disconnects its cards (SCardReleaseContext).
	err := c.s.lib.ReleaseContext(gc.host)
	if gc.gen != c.h.generation() {
		return nil // the old service's context is gone anyway
	}
	return err
}

// release frees everything at the end of the connection.
func (c *conn) release() {
	for _, gc := range c.contexts {
		c.dropContext(gc)
	}
}

// cancel serves SCARD_CANCEL, which names any connection's context: it
// ends that connection's event wait with SCARD_E_CANCELLED
// (src/winscard_svc.c:673-707). Host calls are not cancelled: guests
// reach SCardCancel only through their event waits, which the hub serves.
func (c *conn) cancel(cs *pcsc.CancelStruct) error {
	c.s.mu.Lock()
	gc := c.s.contexts[cs.Context]
	c.s.mu.Unlock()
	cs.RV = uint32(scard.InvalidHandle)
	if gc != nil {
		cs.RV = 0
		if c.h.unregister(gc.conn) {
			go gc.conn.sendSignal(pcsc.ReturnCancelled)
		}
	}
	return c.reply(cs)
}
