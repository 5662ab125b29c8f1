package pcsc

import (
	"bytes"
	"fmt"
)

// This file holds the message catalogue of protocols 4.4 to 4.6: command
// codes, the fixed structs of src/winscard_msg.h (cited from pcsc-lite
// 2.5.1; the layouts are the same since 1.8.4) and the reader state record.
// stream.go frames byte streams with it.

// Command codes, from enum pcsc_msg_commands (src/winscard_msg.h:80-107).
// CmdEstablishContext, CmdCancel and CmdVersion are in wire.go.
const (
	CmdReleaseContext        = 0x02
	CmdListReaders           = 0x03 // not implemented by any server: it closes
	CmdConnect               = 0x04
	CmdReconnect             = 0x05
	CmdDisconnect            = 0x06
	CmdBeginTransaction      = 0x07
	CmdEndTransaction        = 0x08
	CmdTransmit              = 0x09
	CmdControl               = 0x0A
	CmdStatus                = 0x0B
	CmdGetStatusChange       = 0x0C // unused: the server closes
	CmdCancelTransaction     = 0x0E // unused: the server closes
	CmdGetAttrib             = 0x0F
	CmdSetAttrib             = 0x10
	CmdGetReadersState       = 0x12
	CmdWaitReaderStateChange = 0x13
	CmdStopWaiting           = 0x14 // CMD_STOP_WAITING_READER_STATE_CHANGE
	CmdGetReaderEvents       = 0x15 // protocol 4.5 and later
	CmdGetReadersStateSize   = 0x16 // protocol 4.6 and later
	CmdGetReadersStateArray  = 0x17 // protocol 4.6 and later
)

// More PC/SC return codes (src/PCSC/pcsclite.h.in:111-215).
const (
	ReturnCancelled          uint32 = 0x80100002 // SCARD_E_CANCELLED
	ReturnInvalidHandle      uint32 = 0x80100003 // SCARD_E_INVALID_HANDLE
	ReturnInsufficientBuffer uint32 = 0x80100008 // SCARD_E_INSUFFICIENT_BUFFER
	ReturnUnknownReader      uint32 = 0x80100009 // SCARD_E_UNKNOWN_READER
	ReturnInvalidValue       uint32 = 0x80100011 // SCARD_E_INVALID_VALUE
	ReturnCommError          uint32 = 0x80100013 // SCARD_F_COMM_ERROR
	ReturnUnsupported        uint32 = 0x8010001F // SCARD_E_UNSUPPORTED_FEATURE
	ReturnSecurityViolation  uint32 = 0x8010006A // SCARD_W_SECURITY_VIOLATION
)

// Limits of the protocol (src/PCSC/pcsclite.h.in:59, 285-299).
const (
	// MaxBufferSizeExtended (MAX_BUFFER_SIZE_EXTENDED, 4+3+65536+3+2) is
	// the size of the server's send and receive buffers: pcscd closes a
	// connection whose cbSendLength is larger.
	MaxBufferSizeExtended = 65548
	// MaxAttrSize (MAX_BUFFER_SIZE) is the inline pbAttr of getset_struct.
	MaxAttrSize = 264
	// MaxReaderName (MAX_READERNAME) is the reader name field, NUL included.
	MaxReaderName = 128
	// MaxATRSize (MAX_ATR_SIZE) is the ATR field of a reader state.
	MaxATRSize = 33
	// DefaultSlots is PCSCLITE_MAX_READERS_CONTEXTS upstream: the records
	// of a CMD_GET_READERS_STATE reply. Fedora builds with 48, RHEL 7 with
	// 32, without changing the protocol version.
	DefaultSlots = 16
	// MaxSlots bounds the reader arrays cardshare accepts. pcsc-lite 2.5
	// grows its array by two records per reader with no upper limit; a
	// host with a thousand readers is not a host cardshare serves, and the
	// bound keeps a corrupt size from stalling a connection.
	MaxSlots = 1024
)

// Sizes of the structs, from src/winscard_msg.h and pcsc-wirecheck.
const (
	HeaderSize          = headerSize // struct rxHeader
	EstablishSize       = 12         // struct establish_struct
	ReleaseSize         = 8          // struct release_struct
	ConnectSize         = 152        // struct connect_struct
	ReconnectSize       = 24         // struct reconnect_struct
	DisconnectSize      = 12         // struct disconnect_struct
	BeginSize           = 8          // struct begin_struct
	EndSize             = 12         // struct end_struct
	CancelSize          = cancelSize // struct cancel_struct
	StatusSize          = 8          // struct status_struct
	TransmitSize        = 32         // struct transmit_struct
	ControlSize         = 24         // struct control_struct
	GetSetSize          = 280        // struct getset_struct
	VersionSize         = versionSize
	WaitSize            = 8   // struct wait_reader_state_change: the event signal
	ReaderEventsSize    = 8   // struct get_reader_events
	ArraySizeSize       = 4   // the int32 reply to CMD_GET_READERS_STATE_SIZE
	ReaderStateSize     = 184 // READER_STATE (pubReaderStatesList, src/readers.h:49-60)
	maxFixedSize        = GetSetSize
	MaxRequestFixedSize = HeaderSize + GetSetSize
)

// Offsets of the fields the codec and the proxy (package
// internal/pcsc/proxy, which uses the exported ones) read or write, by
// struct. rv is the last field of every struct, at size-4.
const (
	OffEstablishContext = 4
	OffReleaseContext   = 0
	offConnectContext   = 0
	OffConnectReader    = 4
	OffConnectCard      = 140
	OffConnectProtocol  = 144
	OffCardHandle       = 0 // hCard opens every struct of a card call
	OffCancelContext    = 0
	OffTransmitSendLen  = 12
	offTransmitRecvLen  = 24
	OffControlSendLen   = 8
	OffControlReturned  = 16
	offGetSetAttrLen    = 272
	offStateName        = 0
	offStateEvents      = 128
	offStateState       = 132
	offStateSharing     = 136
	offStateATR         = 140
	offStatePad         = offStateATR + MaxATRSize // 3 bytes pcscd leaves uninitialised
	offStateATRLen      = 176
	offStateProtocol    = 180
)

// command describes one command of the catalogue.
type command struct {
	name  string
	body  int    // request struct size after the header
	reply int    // reply struct size; 0 for the commands described in replyTo
	since uint32 // the first protocol minor (of major 4) that has it
}

// commands is indexed by command code. A zero entry is not a command any
// server of protocol 4.4 to 4.6 executes: it closes the connection.
var commands = [...]command{
	CmdEstablishContext:      {"SCARD_ESTABLISH_CONTEXT", EstablishSize, EstablishSize, 0},
	CmdReleaseContext:        {"SCARD_RELEASE_CONTEXT", ReleaseSize, ReleaseSize, 0},
	CmdConnect:               {"SCARD_CONNECT", ConnectSize, ConnectSize, 0},
	CmdReconnect:             {"SCARD_RECONNECT", ReconnectSize, ReconnectSize, 0},
	CmdDisconnect:            {"SCARD_DISCONNECT", DisconnectSize, DisconnectSize, 0},
	CmdBeginTransaction:      {"SCARD_BEGIN_TRANSACTION", BeginSize, BeginSize, 0},
	CmdEndTransaction:        {"SCARD_END_TRANSACTION", EndSize, EndSize, 0},
	CmdTransmit:              {"SCARD_TRANSMIT", TransmitSize, TransmitSize, 0},
	CmdControl:               {"SCARD_CONTROL", ControlSize, ControlSize, 0},
	CmdStatus:                {"SCARD_STATUS", StatusSize, StatusSize, 0},
	CmdCancel:                {"SCARD_CANCEL", CancelSize, CancelSize, 0},
	CmdGetAttrib:             {"SCARD_GET_ATTRIB", GetSetSize, GetSetSize, 0},
	CmdSetAttrib:             {"SCARD_SET_ATTRIB", GetSetSize, GetSetSize, 0},
	CmdVersion:               {"CMD_VERSION", VersionSize, VersionSize, 0},
	CmdGetReadersState:       {"CMD_GET_READERS_STATE", 0, 0, 0},
	CmdWaitReaderStateChange: {"CMD_WAIT_READER_STATE_CHANGE", 0, 0, 4},
	CmdStopWaiting:           {"CMD_STOP_WAITING_READER_STATE_CHANGE", 0, 0, 4},
	CmdGetReaderEvents:       {"CMD_GET_READER_EVENTS", 0, ReaderEventsSize, 5},
	CmdGetReadersStateSize:   {"CMD_GET_READERS_STATE_SIZE", 0, ArraySizeSize, 6},
	CmdGetReadersStateArray:  {"CMD_GET_READERS_STATE_ARRAY", 0, 0, 6},
}

// CommandName is pcscd's name for cmd (CommandsText[] in
// src/winscard_svc.c), or "command 0xNN" for a code no server executes.
func CommandName(cmd uint32) string {
	if cmd < uint32(len(commands)) && commands[cmd].name != "" {
		return commands[cmd].name
	}
	switch cmd {
	case CmdListReaders:
		return "SCARD_LIST_READERS"
	case CmdGetStatusChange:
		return "SCARD_GET_STATUS_CHANGE"
	case CmdCancelTransaction:
		return "SCARD_CANCEL_TRANSACTION"
	}
	return fmt.Sprintf("command %#02x", cmd)
}

// Supports reports whether a connection of protocol v has command cmd:
// whether a server of that version executes it rather than closing the
// connection.
func (v Version) Supports(cmd uint32) bool {
	if cmd >= uint32(len(commands)) || commands[cmd].name == "" {
		return false
	}
	return v.Major == 4 && v.Minor >= commands[cmd].since
}

// Known reports whether this package can frame a connection of protocol v:
// 4.4, 4.5 or 4.6.
func (v Version) Known() bool { return v.Major == 4 && v.Minor >= 4 && v.Minor <= 6 }

// NewAPI reports whether v uses the reader state API of 4.6: WAIT without
// a dump, then CMD_GET_READERS_STATE_SIZE and _ARRAY.
func (v Version) NewAPI() bool { return v.Major == 4 && v.Minor >= 6 }

// The fixed structs of src/winscard_msg.h, for building and reading
// messages outside the proxy's hot path (tests, the fake daemon). Every
// field is 4 bytes or a byte array, so encoding/binary lays them out as the
// C compiler does; sizes are checked in the tests against pcsc-wirecheck.
// Handles are uint32: they travel as 32 bits whatever the C type.

// EstablishStruct is establish_struct (winscard_msg.h:128-133).
type EstablishStruct struct{ Scope, Context, RV uint32 }

// ReleaseStruct is release_struct (winscard_msg.h:140-144).
type ReleaseStruct struct{ Context, RV uint32 }

// ConnectStruct is connect_struct (winscard_msg.h:151-160).
type ConnectStruct struct {
	Context            uint32
	Reader             [MaxReaderName]byte
	ShareMode          uint32
	PreferredProtocols uint32
	Card               uint32
	ActiveProtocol     uint32
	RV                 uint32
}

// ReconnectStruct is reconnect_struct (winscard_msg.h:167-175).
type ReconnectStruct struct {
	Card, ShareMode, PreferredProtocols, Initialization, ActiveProtocol, RV uint32
}

// DisconnectStruct is disconnect_struct; EndStruct is end_struct
// (winscard_msg.h:182-210): the same layout.
type DisconnectStruct struct{ Card, Disposition, RV uint32 }

// EndStruct is end_struct (winscard_msg.h:205-210).
type EndStruct = DisconnectStruct

// CardStruct is begin_struct and status_struct (winscard_msg.h:194-198,
// 228-232): a card handle and rv.
type CardStruct struct{ Card, RV uint32 }

// CancelStruct is cancel_struct (winscard_msg.h:217-221).
type CancelStruct struct{ Context, RV uint32 }

// TransmitStruct is transmit_struct (winscard_msg.h:239-249). The APDU
// (request, SendLength bytes) and the response (reply, RecvLength bytes,
// only when RV is 0) follow it on the wire.
type TransmitStruct struct {
	Card            uint32
	SendPciProtocol uint32
	SendPciLength   uint32
	SendLength      uint32
	RecvPciProtocol uint32
	RecvPciLength   uint32
	RecvLength      uint32
	RV              uint32
}

// ControlStruct is control_struct (winscard_msg.h:256-264). SendLength
// bytes follow the request, BytesReturned bytes a reply whose RV is 0.
type ControlStruct struct {
	Card, ControlCode, SendLength, RecvLength, BytesReturned, RV uint32
}

// GetSetStruct is getset_struct (winscard_msg.h:271-278).
type GetSetStruct struct {
	Card    uint32
	AttrID  uint32
	Attr    [MaxAttrSize]byte
	AttrLen uint32
	RV      uint32
}

// VersionStruct is version_struct (winscard_msg.h:61-66).
type VersionStruct struct{ Major, Minor, RV uint32 }

// WaitStruct is wait_reader_state_change (winscard_msg.h:117-121): the
// event signal, the cancel signal and the reply to STOP_WAITING.
type WaitStruct struct{ Timeout, RV uint32 }

// ReaderEventsStruct is get_reader_events (winscard_msg.h:280-284).
type ReaderEventsStruct struct{ ReaderEvents, RV uint32 }

// ReaderState is one record of the reader state array, READER_STATE
// (src/readers.h:49-60 in 2.5.1, pubReaderStatesList in
// src/eventhandler.h:52-63 before). Pad is the compiler's padding, which
// pcscd does not initialise; it is kept so that a record round-trips.
type ReaderState struct {
	Name         [MaxReaderName]byte
	EventCounter uint32
	State        uint32
	Sharing      int32
	ATR          [MaxATRSize]byte
	Pad          [3]byte
	ATRLength    uint32
	Protocol     uint32
}

// ReaderName returns the reader name of the record rec (ReaderStateSize
// bytes), without its NUL padding; empty for an unused slot.
func ReaderName(rec []byte) []byte { return CString(rec[offStateName : offStateName+MaxReaderName]) }

// CString returns b up to its first NUL.
func CString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// NewRequest returns a zero value of the request struct of cmd, for
// binary.Decode, or nil for a command without a body.
func NewRequest(cmd uint32) any { return newStruct(cmd) }

// NewReply returns a zero value of the reply struct of cmd, for
// binary.Decode, or nil when the reply is not one struct (reader arrays,
// the array size, or no reply).
func NewReply(cmd uint32) any {
	switch cmd {
	case CmdGetReaderEvents:
		return new(ReaderEventsStruct)
	}
	return newStruct(cmd)
}

func newStruct(cmd uint32) any {
	switch cmd {
	case CmdEstablishContext:
		return new(EstablishStruct)
	case CmdReleaseContext:
		return new(ReleaseStruct)
	case CmdConnect:
		return new(ConnectStruct)
	case CmdReconnect:
		return new(ReconnectStruct)
	case CmdDisconnect, CmdEndTransaction:
		return new(DisconnectStruct)
	case CmdBeginTransaction, CmdStatus:
		return new(CardStruct)
	case CmdCancel:
		return new(CancelStruct)
	case CmdTransmit:
		return new(TransmitStruct)
	case CmdControl:
		return new(ControlStruct)
	case CmdGetAttrib, CmdSetAttrib:
		return new(GetSetStruct)
	case CmdVersion:
		return new(VersionStruct)
	}
	return nil
}

// readerNotInitialized is READER_NOT_INITIALIZED (MAX_ATR_SIZE+1), the
// cardAtrLength of a slot no reader has initialised
// (src/readerfactory.h in pcsc-lite 2.5.1).
const readerNotInitialized = MaxATRSize + 1

// unusedRecord reports whether rec is an unused slot as pcscd writes one:
// all zero (the padding aside) but for cardAtrLength, 0 or
// READER_NOT_INITIALIZED (src/readerfactory.c:140-152, 1199-1207 in
// pcsc-lite 2.5.1; src/winscard_svc.c:938-948 pads old clients' arrays
// with all-zero records).
func unusedRecord(rec []byte) bool {
	for _, c := range rec[:offStatePad] {
		if c != 0 {
			return false
		}
	}
	n := le.Uint32(rec[offStateATRLen:])
	return (n == 0 || n == readerNotInitialized) && le.Uint32(rec[offStateProtocol:]) == 0
}

// ValidRecord checks that rec (ReaderStateSize bytes) is a reader record
// as pcscd writes one, and returns its name, empty for an unused slot. A
// used slot's name is what RFSetReaderName makes of the driver's name:
// printable, ending in " XX YY" (two hex bytes, src/readerfactory.c:743-852
// in pcsc-lite 2.5.1: "%s%s %02X 00", the second byte being the slot),
// NUL-terminated, with zeros after the NUL (the field is cleared before
// it is written, src/readerfactory.c:146, 1200); its cardAtrLength is at
// most READER_NOT_INITIALIZED. Bytes that fail are not a record: a
// misframed stream, whose "records" straddle real ones.
func ValidRecord(rec []byte) (name []byte, ok bool) {
	field := rec[offStateName : offStateName+MaxReaderName]
	name = CString(field)
	if len(name) == 0 {
		return nil, unusedRecord(rec)
	}
	if len(name) == len(field) || len(name) < len(" 00 00") {
		return nil, false
	}
	for _, c := range field[len(name):] {
		if c != 0 {
			return nil, false
		}
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7F {
			return nil, false
		}
	}
	suffix := name[len(name)-6:]
	if suffix[0] != ' ' || suffix[3] != ' ' || !isHex(suffix[1]) || !isHex(suffix[2]) || !isHex(suffix[4]) || !isHex(suffix[5]) {
		return nil, false
	}
	if le.Uint32(rec[offStateATRLen:]) > readerNotInitialized {
		return nil, false
	}
	return name, true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// CleanRecord rewrites the valid, used record rec in place to what the
// guest may see of it: its name, counters, state, sharing, protocol and
// the ATR up to cardAtrLength; the padding, which pcscd does not
// initialise, and ATR bytes past the length become zeros.
func CleanRecord(rec []byte) {
	n := min(le.Uint32(rec[offStateATRLen:]), MaxATRSize)
	clear(rec[offStateATR+int(n) : offStateATRLen])
}
