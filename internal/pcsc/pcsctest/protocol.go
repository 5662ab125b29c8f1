package pcsctest

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// This file is the fake daemon that speaks the protocol: CMD_VERSION as
// each pcsc-lite release answers it, contexts, cards that answer every
// APDU with the APDU itself and 90 00, reader arrays of 16, 32 or 48 fixed
// records (4.4, 4.5) or the dynamic array of 4.6, events, cancel, and the
// closes pcscd answers bad input with (pcsc-lite 2.5.1
// src/winscard_svc.c:334-343, 876-898; 2.2.3 src/winscard_svc.c:387-431).

var le = binary.LittleEndian

// Serve starts a fake daemon that speaks the protocol as a pcscd of d
// would: d.Version and d.Lenient decide CMD_VERSION, d.Readers is the
// number of records of CMD_GET_READERS_STATE (0 means 16). readers are
// plugged in, empty. The daemon stops when the test ends.
func Serve(t testing.TB, d pcsc.Daemon, readers ...string) *Daemon {
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
	if d.Readers == 0 {
		d.Readers = pcsc.DefaultSlots
	}
	fd := &Daemon{Socket: path, Daemon: d, ln: ln, conns: map[net.Conn]bool{}, protocol: true,
		events: 1, registered: map[*conn]bool{}, contexts: map[uint32]*conn{}}
	if d.Version.Minor >= 6 {
		fd.slots = make([]*slot, 2) // INITIAL_MAX_READERS_CONTEXTS
	} else {
		fd.slots = make([]*slot, d.Readers)
	}
	for _, r := range readers {
		fd.plug(r)
	}
	fd.wg.Add(1)
	go fd.serve()
	t.Cleanup(fd.Close)
	return fd
}

// slot is a reader of the fake daemon.
type slot struct {
	name     string
	atr      []byte // nil: no card
	counter  uint32 // card events
	sharing  int32
	protocol uint32
}

// conn is one client connection of a protocol-speaking fake.
type conn struct {
	net.Conn
	wmu     sync.Mutex
	oldAPI  bool   // a 4.6 daemon serving a client older than 4.6
	context uint32 // the connection's one context, 0 if none
	cards   map[uint32]string
}

func (c *conn) send(parts ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, p := range parts {
		if _, err := c.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// AddReader plugs in a reader, as a hotplug would.
func (d *Daemon) AddReader(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.plug(name)
	d.bumpEvents()
	d.signal(pcsc.ReturnSuccess)
}

// RemoveReader unplugs a reader.
func (d *Daemon) RemoveReader(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, s := range d.slots {
		if s != nil && s.name == name {
			d.slots[i] = nil
		}
	}
	d.bumpEvents()
	d.signal(pcsc.ReturnSuccess)
}

// InsertCard puts a card with the given ATR into reader.
func (d *Daemon) InsertCard(reader string, atr []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.find(reader); s != nil {
		s.atr, s.protocol = slices.Clone(atr), 1
		s.counter++
	}
	d.signal(pcsc.ReturnSuccess)
}

// RemoveCard takes the card out of reader.
func (d *Daemon) RemoveCard(reader string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.find(reader); s != nil {
		s.atr, s.protocol = nil, 0
		s.counter++
	}
	d.signal(pcsc.ReturnSuccess)
}

// Received returns the commands the daemon has received, in order, across
// connections; CMD_VERSION included.
func (d *Daemon) Received() []uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.received)
}

func (d *Daemon) plug(name string) {
	for i, s := range d.slots {
		if s == nil {
			d.slots[i] = &slot{name: name}
			return
		}
	}
	if d.Version.Minor >= 6 { // grows by two, never shrinks
		d.slots = append(d.slots, &slot{name: name}, nil)
	}
	// A full fixed array drops the reader, as pcscd refuses it.
}

func (d *Daemon) find(name string) *slot {
	for _, s := range d.slots {
		if s != nil && s.name == name {
			return s
		}
	}
	return nil
}

// bumpEvents counts a reader added or removed: an int16 that wraps to 1.
func (d *Daemon) bumpEvents() {
	if d.events++; d.events > 0x7FFF {
		d.events = 1
	}
}

// signal sends every registered connection its one signal and forgets
// them (EHSignalEventToClients). d.mu is held.
func (d *Daemon) signal(rv uint32) {
	for c := range d.registered {
		c.send(wait(rv))
	}
	clear(d.registered)
}

func wait(rv uint32) []byte {
	return le.AppendUint32(le.AppendUint32(nil, 0), rv)
}

// states returns the reader array a connection reads: the fixed array, the
// old API of 4.6 (16 records, zero-padded), or the dynamic one.
func (d *Daemon) states(oldAPI bool) []byte {
	n := len(d.slots)
	if oldAPI {
		n = min(n, pcsc.DefaultSlots)
	}
	var b []byte
	for i := range n {
		b = append(b, d.record(d.slots[i])...)
	}
	if oldAPI {
		b = append(b, make([]byte, (pcsc.DefaultSlots-n)*pcsc.ReaderStateSize)...)
	}
	return b
}

func (d *Daemon) record(s *slot) []byte {
	var r pcsc.ReaderState
	if s == nil {
		// READER_NOT_INITIALIZED, as RFAllocateReaderSpace and
		// RFCleanupReader leave a slot (src/readerfactory.c:140-152,
		// 1199-1207 in 2.5.1). Only the records a 2.5.x daemon pads
		// old clients' arrays with are all zero (states).
		r.ATRLength = pcsc.MaxATRSize + 1
	} else {
		copy(r.Name[:pcsc.MaxReaderName-1], s.name)
		r.EventCounter, r.Sharing = s.counter, s.sharing
		r.State = 0x02 // SCARD_ABSENT
		if s.atr != nil {
			r.State = 0x34 // PRESENT|POWERED|NEGOTIABLE
			r.ATRLength = uint32(copy(r.ATR[:], s.atr))
			r.Protocol = s.protocol
		}
	}
	b, _ := binary.Append(nil, le, &r)
	return b
}

func (d *Daemon) note(cmd uint32) {
	d.mu.Lock()
	d.received = append(d.received, cmd)
	d.mu.Unlock()
}

var errClose = errors.New("pcsctest: close the connection")

// speak serves one connection as pcscd's ContextThread does.
func (d *Daemon) speak(nc net.Conn) {
	c := &conn{Conn: nc, cards: map[uint32]string{}}
	defer d.forget(c)
	var hdr [pcsc.HeaderSize]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		size, cmd := le.Uint32(hdr[:]), le.Uint32(hdr[4:])
		d.note(cmd)
		if !d.Version.Supports(cmd) {
			return // "Unknown command"
		}
		want := 0
		if s := pcsc.NewRequest(cmd); s != nil {
			want = binary.Size(s)
		}
		if want > 0 && int(size) != want {
			return // "Wrong length"
		}
		body := make([]byte, want)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if err := d.handle(c, cmd, body); err != nil {
			return
		}
	}
}

// forget unregisters a closed connection and releases its contexts.
func (d *Daemon) forget(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.registered, c)
	if c.context != 0 {
		delete(d.contexts, c.context)
	}
}

func (d *Daemon) handle(c *conn, cmd uint32, body []byte) error {
	switch cmd {
	case pcsc.CmdVersion:
		var v pcsc.VersionStruct
		binary.Decode(body, le, &v)
		client := pcsc.Version{Major: v.Major, Minor: v.Minor}
		r := pcsc.VersionStruct{Major: d.Version.Major, Minor: d.Version.Minor}
		if !d.Accepts(client) {
			r.RV = pcsc.ReturnServiceStopped
		} else {
			c.oldAPI = d.Version.Minor >= 6 && client.Minor < 6
		}
		return c.reply(&r)

	case pcsc.CmdEstablishContext:
		var s pcsc.EstablishStruct
		binary.Decode(body, le, &s)
		if s.Scope > 3 {
			s.Context, s.RV = 0, pcsc.ReturnInvalidValue
			return c.reply(&s)
		}
		s.Context = rand.Uint32() & 0x7FFFFFFF
		// One context per connection: a second replaces the first
		// (MSGAddContext, src/winscard_svc.c:953-957 in 2.5.1).
		d.mu.Lock()
		if c.context != 0 {
			delete(d.contexts, c.context)
		}
		d.contexts[s.Context] = c
		d.mu.Unlock()
		c.context = s.Context
		return c.reply(&s)

	case pcsc.CmdReleaseContext:
		var s pcsc.ReleaseStruct
		binary.Decode(body, le, &s)
		switch { // MSGRemoveContext, src/winscard_svc.c:959-971
		case c.context == 0:
			s.RV = pcsc.ReturnInvalidHandle
		case c.context != s.Context:
			s.RV = pcsc.ReturnInvalidValue
		default:
			d.mu.Lock()
			delete(d.contexts, s.Context)
			d.mu.Unlock()
			c.context = 0
		}
		return c.reply(&s)

	case pcsc.CmdConnect:
		var s pcsc.ConnectStruct
		binary.Decode(body, le, &s)
		s.Reader[pcsc.MaxReaderName-1] = 0
		name := string(pcsc.ReaderName(s.Reader[:]))
		d.mu.Lock()
		sl := d.find(name)
		switch {
		case sl == nil:
			s.RV = pcsc.ReturnUnknownReader
		case sl.atr == nil:
			s.RV = 0x8010000C // SCARD_E_NO_SMARTCARD
		default:
			s.Card, s.ActiveProtocol = rand.Uint32()&0x7FFFFFFF, 1
			sl.sharing++
			c.cards[s.Card] = name
		}
		d.mu.Unlock()
		return c.reply(&s)

	case pcsc.CmdDisconnect, pcsc.CmdEndTransaction:
		var s pcsc.DisconnectStruct
		binary.Decode(body, le, &s)
		if err := c.owns(s.Card); err != nil {
			return err
		}
		if cmd == pcsc.CmdDisconnect {
			d.mu.Lock()
			if sl := d.find(c.cards[s.Card]); sl != nil {
				sl.sharing--
			}
			d.mu.Unlock()
			delete(c.cards, s.Card)
		}
		return c.reply(&s)

	case pcsc.CmdReconnect:
		var s pcsc.ReconnectStruct
		binary.Decode(body, le, &s)
		if err := c.owns(s.Card); err != nil {
			return err
		}
		s.ActiveProtocol = 1
		return c.reply(&s)

	case pcsc.CmdBeginTransaction, pcsc.CmdStatus:
		var s pcsc.CardStruct
		binary.Decode(body, le, &s)
		if err := c.owns(s.Card); err != nil {
			return err
		}
		return c.reply(&s)

	case pcsc.CmdTransmit:
		var s pcsc.TransmitStruct
		binary.Decode(body, le, &s)
		if s.SendLength > pcsc.MaxBufferSizeExtended {
			return errClose // "Buffer overflow detected"
		}
		apdu := make([]byte, s.SendLength)
		if _, err := io.ReadFull(c, apdu); err != nil {
			return err
		}
		if err := c.owns(s.Card); err != nil {
			return err
		}
		resp := append(apdu, 0x90, 0x00)
		if uint32(len(resp)) > s.RecvLength {
			s.RecvLength, s.RV = uint32(len(resp)), pcsc.ReturnInsufficientBuffer
			return c.reply(&s)
		}
		s.RecvLength = uint32(len(resp))
		return c.reply(&s, resp)

	case pcsc.CmdControl:
		var s pcsc.ControlStruct
		binary.Decode(body, le, &s)
		if s.SendLength > pcsc.MaxBufferSizeExtended {
			return errClose
		}
		in := make([]byte, s.SendLength)
		if _, err := io.ReadFull(c, in); err != nil {
			return err
		}
		if err := c.owns(s.Card); err != nil {
			return err
		}
		if s.SendLength > s.RecvLength {
			s.BytesReturned, s.RV = s.SendLength, pcsc.ReturnInsufficientBuffer
			return c.reply(&s)
		}
		s.BytesReturned = s.SendLength
		return c.reply(&s, in)

	case pcsc.CmdGetAttrib, pcsc.CmdSetAttrib:
		var s pcsc.GetSetStruct
		binary.Decode(body, le, &s)
		if s.AttrLen > pcsc.MaxAttrSize {
			return errClose
		}
		if err := c.owns(s.Card); err != nil {
			return err
		}
		s.RV = pcsc.ReturnUnsupported
		return c.reply(&s)

	case pcsc.CmdCancel:
		var s pcsc.CancelStruct
		binary.Decode(body, le, &s)
		d.mu.Lock()
		target := d.contexts[s.Context]
		if target == nil {
			s.RV = pcsc.ReturnInvalidHandle
		} else if d.registered[target] {
			delete(d.registered, target)
			target.send(wait(pcsc.ReturnCancelled))
		}
		d.mu.Unlock()
		return c.reply(&s)

	case pcsc.CmdGetReadersState:
		d.mu.Lock()
		b := d.states(d.Version.Minor >= 6)
		d.mu.Unlock()
		return d.sendArray(c, b)

	case pcsc.CmdWaitReaderStateChange:
		d.mu.Lock()
		d.registered[c] = true
		if d.Version.Minor < 6 {
			// Registration and dump are atomic, as since pcsc-lite
			// 1.8.24 (src/eventhandler.c:66-77 in 2.2.3).
			defer d.mu.Unlock()
			return c.send(d.states(false))
		}
		// 2.5.x registers, then dumps for an old client outside the
		// lock (src/winscard_svc.c:451-465): a signal can come first,
		// or between records.
		var b []byte
		if c.oldAPI {
			b = d.states(true)
		}
		d.mu.Unlock()
		return d.sendArray(c, b)

	case pcsc.CmdStopWaiting:
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.registered[c] {
			delete(d.registered, c)
			return c.send(wait(pcsc.ReturnSuccess))
		}
		return nil

	case pcsc.CmdGetReaderEvents:
		d.mu.Lock()
		r := pcsc.ReaderEventsStruct{ReaderEvents: d.events}
		d.mu.Unlock()
		return c.reply(&r)

	case pcsc.CmdGetReadersStateSize:
		d.mu.Lock()
		n := len(d.slots)
		d.mu.Unlock()
		return c.send(le.AppendUint32(nil, uint32(n)))

	case pcsc.CmdGetReadersStateArray:
		d.mu.Lock()
		b := d.states(false)
		d.mu.Unlock()
		return d.sendArray(c, b)
	}
	return errClose
}

// sendArray writes a reader array: in one write up to 2.4.x, one write
// per record in 2.5.x (MSGSendReaderStates, src/winscard_svc.c:918-951 in
// 2.5.1), where a signal can come between two records.
func (d *Daemon) sendArray(c *conn, b []byte) error {
	if d.Version.Minor < 6 {
		return c.send(b)
	}
	for ; len(b) > 0; b = b[pcsc.ReaderStateSize:] {
		if err := c.send(b[:pcsc.ReaderStateSize]); err != nil {
			return err
		}
		runtime.Gosched()
	}
	return nil
}

// owns mirrors MSGCheckHandleAssociation, without its 2-second sleep.
func (c *conn) owns(card uint32) error {
	if _, ok := c.cards[card]; !ok {
		return errClose
	}
	return nil
}

// reply writes a struct and then its variable data, in separate writes
// as pcscd does.
func (c *conn) reply(s any, data ...[]byte) error {
	b, err := binary.Append(nil, le, s)
	if err != nil {
		return err
	}
	return c.send(append([][]byte{b}, data...)...)
}
