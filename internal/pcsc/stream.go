package pcsc

import (
	"errors"
	"fmt"
)

// A pcsc-lite connection is two byte streams without message boundaries
// (pcsc-lite 2.5.1 src/winscard_msg.c:357-543): the client writes a header and a struct, and after TRANSMIT
// and CONTROL the bytes its cbSendLength counts; the server writes bare
// structs, whose length only the request they answer tells, plus one
// unprompted 8-byte message after each WAIT registration. RequestScanner
// and ReplyScanner cut such streams into units without copying or
// allocating: they look at the bytes at hand and say how many form the next
// unit, or that more are needed. Fixed parts (a header with its struct, a
// reply struct, a reader record) are returned whole, so that they can be
// read and rewritten in place; variable data is returned in whatever pieces
// have arrived, so that no unit is larger than maxRequestFixedSize and a
// 64 KiB APDU needs no 64 KiB buffer.

// ErrProtocol means a peer broke the protocol: a command the connection's
// version does not have, a struct of the wrong size, a length beyond the
// protocol's limits, or bytes that answer nothing. pcscd closes a
// connection for each of these (pcsc-lite 2.5.1 src/winscard_svc.c:334-343,
// 740-742, 876-878); so does the proxy.
var ErrProtocol = errors.New("pcsc: protocol violation")

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
		data = le.Uint32(body[offTransmitSendLen:])
	case CmdControl:
		data = le.Uint32(body[offControlSendLen:])
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
		if v.newAPI() {
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
// yet answered, nil when none is; registered says that a WAIT registration
// awaits its signal. A unit with Last set completes want, or is the signal.
// The caller consumes exactly Len bytes before calling Next again, and
// passes the same want until a unit completes it. An error is final.
//
// When both a reply and the signal may come, Next takes the bytes for the
// reply, as libpcsclite reads them. A server can send the signal first
// (pcsc-lite 2.5.1 src/winscard_svc.c:451-465 writes the state dump after
// releasing the lock); the client then misreads the stream, and framing
// it the same way keeps the proxy in step with the client.
func (s *ReplyScanner) Next(b []byte, want *Reply, registered bool) (Unit, error) {
	if s.data > 0 {
		n := min(len(b), s.data)
		s.data -= n
		return Unit{Kind: KindData, Command: s.cur.Command, Len: n, Last: s.data == 0}, nil
	}
	if s.inArr {
		return s.nextRecord(b), nil
	}
	if want == nil {
		if registered {
			if len(b) < WaitSize {
				return Unit{}, nil
			}
			return Unit{Kind: KindSignal, Command: CmdWaitReaderStateChange, Len: WaitSize, Last: true}, nil
		}
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
			data = le.Uint32(b[offControlReturned:])
		}
	}
	if data > MaxBufferSizeExtended {
		return Unit{}, fmt.Errorf("%w: server answered %s with %d bytes, over %d", ErrProtocol, CommandName(cmd), data, MaxBufferSizeExtended)
	}
	s.data = int(data)
	return Unit{Kind: KindReply, Command: cmd, Len: size, Last: data == 0}, nil
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
