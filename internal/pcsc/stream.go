package pcsc

import (
	"errors"
	"fmt"
)

// A pcsc-lite connection is two byte streams without message boundaries
// (MessageSendWithHeader, MessageSend and MessageReceive,
// src/winscard_msg.c:320-543 in pcsc-lite 2.5.1): the client writes a header and a struct, and after TRANSMIT
// and CONTROL the bytes its cbSendLength counts; the server writes bare
// structs, whose length only the request they answer tells, plus one
// unprompted 8-byte message after each WAIT registration. RequestScanner
// and ReplyScanner cut such streams into units without copying or
// allocating: they look at the bytes at hand and say how many form the next
// unit, or that more are needed. Fixed parts (a header with its struct, a
// reply struct, a reader record) are returned whole, so that they can be
// read and rewritten in place; variable data is returned in whatever pieces
// have arrived, so that no unit is larger than MaxRequestFixedSize and a
// 64 KiB APDU needs no 64 KiB buffer.

// ErrProtocol means a peer broke the protocol: a command the connection's
// version does not have, a struct of the wrong size, a length beyond the
// protocol's limits, or bytes that answer nothing. pcscd closes a
// connection for each of these (READ_BODY and the "Unknown command"
// branch of ContextThread, src/winscard_svc.c:334-343, 876-878 in 2.5.1);
// so does the proxy.
var ErrProtocol = errors.New("pcsc: protocol violation")

// IsProtocol reports whether err is a protocol violation by a peer.
func IsProtocol(err error) bool { return errors.Is(err, ErrProtocol) }

// Kind is what a unit of a stream holds.
type Kind uint8

const (
	// KindRequest is a client's header and fixed struct.
	KindRequest Kind = iota + 1
	// KindData is variable data: the APDU or control bytes after a
	// TRANSMIT or CONTROL struct, in either direction. A message's data
	// may come in several units.
	KindData
	// KindReply is a server's reply struct.
	KindReply
	// KindRecord is one reader state record of an array reply.
	KindRecord
	// KindArraySize is the 4-byte reply to CMD_GET_READERS_STATE_SIZE.
	KindArraySize
	// KindSignal is the 8-byte wait_reader_state_change the server sends
	// once per WAIT registration: an event, a cancel, or the answer to
	// STOP_WAITING.
	KindSignal
)

// Unit is one piece of a stream.
type Unit struct {
	Kind    Kind
	Command uint32 // the request's command, or the command answered
	Len     int    // bytes; 0 means more bytes are needed
	Index   int    // the record's index, for KindRecord
	Last    bool   // the unit ends its request or reply
}

// RequestScanner frames the stream a client sends after its opening
// CMD_VERSION exchange. The zero value is not usable: set Version.
type RequestScanner struct {
	// Version is the protocol the connection speaks; a command it does
	// not have is an ErrProtocol, as it would close the connection in a
	// server of that version.
	Version Version

	cmd  uint32
	data int // bytes of variable data still to come
}

// Next returns the unit at the start of b, or a Unit with Len 0 when b
// does not hold all of it yet. The caller consumes exactly Len bytes
// before calling Next again. An error is final.
func (s *RequestScanner) Next(b []byte) (Unit, error) {
	if s.data > 0 {
		n := min(len(b), s.data)
		s.data -= n
		return Unit{Kind: KindData, Command: s.cmd, Len: n, Last: s.data == 0}, nil
	}
	if len(b) < HeaderSize {
		return Unit{}, nil
	}
	size, cmd := le.Uint32(b), le.Uint32(b[4:])
	if !s.Version.Supports(cmd) {
		return Unit{}, fmt.Errorf("%w: client sent %s, which protocol %s does not have", ErrProtocol, CommandName(cmd), s.Version)
	}
	want := commands[cmd].body
	if size != uint32(want) {
		// pcscd checks the size of structs and ignores it for commands
		// without one, where extra bytes would be read as the next
		// header; either way the stream is lost.
		return Unit{}, fmt.Errorf("%w: client sent %s with a %d-byte struct, want %d", ErrProtocol, CommandName(cmd), size, want)
	}
	if len(b) < HeaderSize+want {
		return Unit{}, nil
	}
	body := b[HeaderSize : HeaderSize+want]
	var data uint32
	switch cmd {
	case CmdTransmit:
		data = le.Uint32(body[OffTransmitSendLen:])
	case CmdControl:
		data = le.Uint32(body[OffControlSendLen:])
	case CmdGetAttrib, CmdSetAttrib:
		if n := le.Uint32(body[offGetSetAttrLen:]); n > MaxAttrSize {
			return Unit{}, fmt.Errorf("%w: client sent %s with cbAttrLen %d, over %d", ErrProtocol, CommandName(cmd), n, MaxAttrSize)
		}
	}
	if data > MaxBufferSizeExtended {
		return Unit{}, fmt.Errorf("%w: client sent %s with cbSendLength %d, over %d", ErrProtocol, CommandName(cmd), data, MaxBufferSizeExtended)
	}
	s.cmd, s.data = cmd, int(data)
	return Unit{Kind: KindRequest, Command: cmd, Len: HeaderSize + want, Last: data == 0}, nil
}

// Reply is how the server answers one request: the framing rule for the
// server stream.
type Reply struct {
	Command uint32
	// Records is the number of reader state records of an array reply
	// (CMD_GET_READERS_STATE, the WAIT dump, CMD_GET_READERS_STATE_ARRAY);
	// 0 for a struct reply.
	Records int
}

// ReplyTo returns how a server of protocol v answers a request of command
// cmd: a struct, or an array of slots records for CMD_GET_READERS_STATE
// and an old-style WAIT, or of size records (the last answer to
// CMD_GET_READERS_STATE_SIZE) for CMD_GET_READERS_STATE_ARRAY. ok is false
// when no reply follows: WAIT in 4.6 and STOP_WAITING, whose answer is the
// registration's signal.
func ReplyTo(cmd uint32, v Version, slots, size int) (r Reply, ok bool) {
	switch cmd {
	case CmdGetReadersState:
		return Reply{cmd, slots}, true
	case CmdWaitReaderStateChange:
		if v.NewAPI() {
			return Reply{}, false
		}
		return Reply{cmd, slots}, true
	case CmdStopWaiting:
		return Reply{}, false
	case CmdGetReadersStateArray:
		return Reply{cmd, size}, true
	}
	return Reply{Command: cmd}, true
}

// Registers reports whether a request of command cmd registers the
// connection for one event signal.
func Registers(cmd uint32) bool { return cmd == CmdWaitReaderStateChange }

// ReplyScanner frames the stream a server sends. It knows the replies to
// expect only from its caller, who tracks the requests in flight.
type ReplyScanner struct {
	cur    Reply
	data   int // bytes of variable data still to come
	record int // index of the next record of cur; valid while inArray
	inArr  bool
}

// Next returns the unit at the start of b, or a Unit with Len 0 when b
// does not hold all of it yet. want is the reply to the oldest request not
// yet answered, nil when none is; armed says that a WAIT registration that
// pcscd has made awaits its signal. A unit with Last set completes want, or
// is the signal. The caller consumes exactly Len bytes before calling Next
// again, and passes the same want until a unit completes it. An error is
// final.
//
// want.Command CmdStopWaiting stands for the answer to a STOP_WAITING sent
// while armed: exactly one 8-byte signal, the acknowledgement or the event
// or cancel signal that came first (src/winscard_svc.c:467-487 and
// src/eventhandler.c:114-131 in pcsc-lite 2.5.1). The caller passes it only
// while armed; with armed false, pcscd answers STOP_WAITING with nothing.
//
// While armed, pcscd may write the signal between any two of its writes
// (EHSignalEventToClients runs on another thread; 2.5.x writes reader
// arrays one record per write, src/winscard_svc.c:918-951), so Next looks
// for it at every unit boundary and tells it from a reply by protocol
// knowledge (see isSignal) instead of taking the bytes for the reply as
// libpcsclite does.
func (s *ReplyScanner) Next(b []byte, want *Reply, armed bool) (Unit, error) {
	if s.data > 0 {
		n := min(len(b), s.data)
		s.data -= n
		return Unit{Kind: KindData, Command: s.cur.Command, Len: n, Last: s.data == 0}, nil
	}
	if armed {
		next := want
		if s.inArr {
			next = &s.cur
		}
		sig, need, err := isSignal(b, next, s.inArr || next != nil && next.Records > 0)
		switch {
		case err != nil:
			return Unit{}, err
		case need:
			return Unit{}, nil
		case sig:
			return Unit{Kind: KindSignal, Command: CmdWaitReaderStateChange, Len: WaitSize, Last: true}, nil
		}
	}
	if s.inArr {
		return s.nextRecord(b), nil
	}
	if want == nil {
		if len(b) > 0 {
			return Unit{}, fmt.Errorf("%w: server sent bytes no request asked for", ErrProtocol)
		}
		return Unit{}, nil
	}
	s.cur = *want
	cmd := want.Command
	switch {
	case want.Records > 0:
		if want.Records > MaxSlots {
			return Unit{}, fmt.Errorf("%w: reply to %s of %d reader records, over %d", ErrProtocol, CommandName(cmd), want.Records, MaxSlots)
		}
		s.inArr, s.record = true, 0
		return s.nextRecord(b), nil
	case cmd == CmdGetReadersStateSize:
		if len(b) < ArraySizeSize {
			return Unit{}, nil
		}
		if n := int32(le.Uint32(b)); n < 1 || n > MaxSlots {
			return Unit{}, fmt.Errorf("%w: server's reader array has %d records, want 1 to %d", ErrProtocol, n, MaxSlots)
		}
		return Unit{Kind: KindArraySize, Command: cmd, Len: ArraySizeSize, Last: true}, nil
	case cmd == CmdStopWaiting:
		return Unit{}, fmt.Errorf("%w: STOP_WAITING answered while no registration was pending", ErrProtocol)
	case cmd >= uint32(len(commands)) || commands[cmd].reply == 0:
		return Unit{}, fmt.Errorf("%w: no reply is framed for %s", ErrProtocol, CommandName(cmd))
	}
	size := commands[cmd].reply
	if len(b) < size {
		return Unit{}, nil
	}
	var data uint32
	if rv := le.Uint32(b[size-4:]); rv == ReturnSuccess {
		switch cmd {
		case CmdTransmit:
			data = le.Uint32(b[offTransmitRecvLen:])
		case CmdControl:
			data = le.Uint32(b[OffControlReturned:])
		}
	}
	if data > MaxBufferSizeExtended {
		return Unit{}, fmt.Errorf("%w: server answered %s with %d bytes, over %d", ErrProtocol, CommandName(cmd), data, MaxBufferSizeExtended)
	}
	s.data = int(data)
	return Unit{Kind: KindReply, Command: cmd, Len: size, Last: data == 0}, nil
}

// isSignal decides whether b, at a unit boundary of a server stream whose
// registration is armed, starts with the 8-byte signal {timeOut 0, rv}
// (rv SCARD_S_SUCCESS for an event or the STOP acknowledgement,
// SCARD_E_CANCELLED for a cancel: src/winscard_svc.c:901-916) rather than
// with next, the unit expected otherwise (nil: none). need means that b is
// too short to tell. The rules, exact for what pcscd sends:
//   - nothing else expected, or the answer to STOP_WAITING: it must be the
//     signal; anything else is a protocol violation;
//   - a non-zero first word is never the signal: a used reader record
//     starts with its name, CMD_GET_READER_EVENTS's reply with a counter
//     of 1 or more (src/readerfactory.c:78, 437-440), the array size with
//     a count of 1 or more;
//   - rv SCARD_E_CANCELLED after a zero word is the signal: no reply or
//     record has those 8 bytes;
//   - 8 zero bytes before a record (record says one is expected) are the
//     signal unless the 184 bytes are a whole unused record, all zero but
//     for cardAtrLength 0 or 34 and the padding (RFAllocateReaderSpace and
//     RFCleanupReader in src/readerfactory.c:140-152, 1199-1207). The one
//     case this cannot tell, an all-zero record (2.5.x pads old clients'
//     arrays with them) against the signal and an unused record after it,
//     is taken as a record: the bytes are zeros either way, and should the
//     signal have come first, the misframed records that follow fail
//     validation (ValidRecord) and the proxy closes the connection.
func isSignal(b []byte, next *Reply, record bool) (sig, need bool, err error) {
	mustBe := next == nil || next.Command == CmdStopWaiting
	if len(b) < 4 {
		return false, true, nil
	}
	if le.Uint32(b) != 0 {
		if mustBe {
			return false, false, fmt.Errorf("%w: server sent bytes no request asked for", ErrProtocol)
		}
		return false, false, nil
	}
	if len(b) < WaitSize {
		return false, true, nil
	}
	switch rv := le.Uint32(b[4:]); {
	case rv == ReturnCancelled:
		return true, false, nil
	case rv != ReturnSuccess:
		if mustBe {
			return false, false, fmt.Errorf("%w: server sent bytes no request asked for", ErrProtocol)
		}
		return false, false, nil
	case mustBe || !record:
		return true, false, nil
	}
	if len(b) < ReaderStateSize {
		return false, true, nil
	}
	return !unusedRecord(b[:ReaderStateSize]), false, nil
}

func (s *ReplyScanner) nextRecord(b []byte) Unit {
	if len(b) < ReaderStateSize {
		return Unit{}
	}
	i := s.record
	s.record++
	last := s.record == s.cur.Records
	if last {
		s.inArr = false
	}
	return Unit{Kind: KindRecord, Command: s.cur.Command, Len: ReaderStateSize, Index: i, Last: last}
}
