package scard

import (
	"errors"
	"fmt"
	"time"
)

// Code is a PC/SC return code in pcsc-lite's numbering
// (src/PCSC/pcsclite.h.in:107-231 in pcsc-lite 2.5.1; the same values as
// Windows' winerror.h except SCARD_E_UNSUPPORTED_FEATURE, see winabi.go).
// Calls return a Code as their error, or nil for SCARD_S_SUCCESS.
type Code uint32

// Return codes cardshare branches on or sends (pcsclite.h.in).
const (
	Success            Code = 0x00000000 // SCARD_S_SUCCESS
	InternalError      Code = 0x80100001 // SCARD_F_INTERNAL_ERROR
	Cancelled          Code = 0x80100002 // SCARD_E_CANCELLED
	InvalidHandle      Code = 0x80100003 // SCARD_E_INVALID_HANDLE
	InvalidParameter   Code = 0x80100004 // SCARD_E_INVALID_PARAMETER
	NoMemory           Code = 0x80100006 // SCARD_E_NO_MEMORY
	InsufficientBuffer Code = 0x80100008 // SCARD_E_INSUFFICIENT_BUFFER
	UnknownReader      Code = 0x80100009 // SCARD_E_UNKNOWN_READER
	Timeout            Code = 0x8010000A // SCARD_E_TIMEOUT
	SharingViolation   Code = 0x8010000B // SCARD_E_SHARING_VIOLATION
	NoSmartcard        Code = 0x8010000C // SCARD_E_NO_SMARTCARD
	ProtoMismatch      Code = 0x8010000F // SCARD_E_PROTO_MISMATCH
	NotReady           Code = 0x80100010 // SCARD_E_NOT_READY
	InvalidValue       Code = 0x80100011 // SCARD_E_INVALID_VALUE
	SystemCancelled    Code = 0x80100012 // SCARD_E_SYSTEM_CANCELLED
	CommError          Code = 0x80100013 // SCARD_F_COMM_ERROR
	UnknownError       Code = 0x80100014 // SCARD_F_UNKNOWN_ERROR
	NotTransacted      Code = 0x80100016 // SCARD_E_NOT_TRANSACTED
	ReaderUnavailable  Code = 0x80100017 // SCARD_E_READER_UNAVAILABLE
	NoService          Code = 0x8010001D // SCARD_E_NO_SERVICE
	ServiceStopped     Code = 0x8010001E // SCARD_E_SERVICE_STOPPED
	UnsupportedFeature Code = 0x8010001F // SCARD_E_UNSUPPORTED_FEATURE (= SCARD_E_UNEXPECTED)
	NoReadersAvailable Code = 0x8010002E // SCARD_E_NO_READERS_AVAILABLE
	UnsupportedCard    Code = 0x80100065 // SCARD_W_UNSUPPORTED_CARD
	UnresponsiveCard   Code = 0x80100066 // SCARD_W_UNRESPONSIVE_CARD
	UnpoweredCard      Code = 0x80100067 // SCARD_W_UNPOWERED_CARD
	ResetCard          Code = 0x80100068 // SCARD_W_RESET_CARD
	RemovedCard        Code = 0x80100069 // SCARD_W_REMOVED_CARD
	SecurityViolation  Code = 0x8010006A // SCARD_W_SECURITY_VIOLATION
)

var codeNames = map[Code]string{
	Success:            "SCARD_S_SUCCESS",
	InternalError:      "SCARD_F_INTERNAL_ERROR",
	Cancelled:          "SCARD_E_CANCELLED",
	InvalidHandle:      "SCARD_E_INVALID_HANDLE",
	InvalidParameter:   "SCARD_E_INVALID_PARAMETER",
	NoMemory:           "SCARD_E_NO_MEMORY",
	InsufficientBuffer: "SCARD_E_INSUFFICIENT_BUFFER",
	UnknownReader:      "SCARD_E_UNKNOWN_READER",
	Timeout:            "SCARD_E_TIMEOUT",
	SharingViolation:   "SCARD_E_SHARING_VIOLATION",
	NoSmartcard:        "SCARD_E_NO_SMARTCARD",
	ProtoMismatch:      "SCARD_E_PROTO_MISMATCH",
	NotReady:           "SCARD_E_NOT_READY",
	InvalidValue:       "SCARD_E_INVALID_VALUE",
	SystemCancelled:    "SCARD_E_SYSTEM_CANCELLED",
	CommError:          "SCARD_F_COMM_ERROR",
	UnknownError:       "SCARD_F_UNKNOWN_ERROR",
	NotTransacted:      "SCARD_E_NOT_TRANSACTED",
	ReaderUnavailable:  "SCARD_E_READER_UNAVAILABLE",
	NoService:          "SCARD_E_NO_SERVICE",
	ServiceStopped:     "SCARD_E_SERVICE_STOPPED",
	UnsupportedFeature: "SCARD_E_UNSUPPORTED_FEATURE",
	NoReadersAvailable: "SCARD_E_NO_READERS_AVAILABLE",
	UnsupportedCard:    "SCARD_W_UNSUPPORTED_CARD",
	UnresponsiveCard:   "SCARD_W_UNRESPONSIVE_CARD",
	UnpoweredCard:      "SCARD_W_UNPOWERED_CARD",
	ResetCard:          "SCARD_W_RESET_CARD",
	RemovedCard:        "SCARD_W_REMOVED_CARD",
	SecurityViolation:  "SCARD_W_SECURITY_VIOLATION",
}

func (c Code) Error() string {
	if n, ok := codeNames[c]; ok {
		return fmt.Sprintf("scard: %s (%#08x)", n, uint32(c))
	}
	return fmt.Sprintf("scard: PC/SC error %#08x", uint32(c))
}

// CodeOf returns the Code in err: Success for nil, the Code an error
// wraps, or InternalError for any other error.
func CodeOf(err error) Code {
	if err == nil {
		return Success
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return InternalError
}

// errOf turns a Code into the error a call returns.
func errOf(c Code) error {
	if c == Success {
		return nil
	}
	return c
}

// Context and Card are the host library's handles (SCARDCONTEXT,
// SCARDHANDLE): pointer-sized on Windows, long on Linux, int32 on macOS.
// They never leave the host: guests get handles of their own.
type (
	Context uintptr
	Card    uintptr
)

// Scopes, share modes, protocols and dispositions (pcsclite.h.in:234-255;
// the same values on Windows, winscard.h and winsmcrd.h).
const (
	ScopeUser     = 0
	ScopeTerminal = 1
	ScopeSystem   = 2
	ScopeGlobal   = 3

	ShareExclusive = 1
	ShareShared    = 2
	ShareDirect    = 3

	ProtocolUndefined = 0
	ProtocolT0        = 1
	ProtocolT1        = 2
	ProtocolRaw       = 4 // pcsc-lite; Windows' SCARD_PROTOCOL_RAW is 0x10000, see winabi.go
	ProtocolT15       = 8

	DispositionLeave   = 0 // SCARD_LEAVE_CARD
	DispositionReset   = 1 // SCARD_RESET_CARD
	DispositionUnpower = 2 // SCARD_UNPOWER_CARD
	DispositionEject   = 3 // SCARD_EJECT_CARD
)

// Reader states of SCardStatus and the reader state records, as the bit
// field of pcsc-lite (pcsclite.h.in:257-263). Windows returns an
// enumeration from SCardStatus instead (winabi.go).
const (
	StatusUnknown    = 0x0001
	StatusAbsent     = 0x0002
	StatusPresent    = 0x0004
	StatusSwallowed  = 0x0008
	StatusPowered    = 0x0010
	StatusNegotiable = 0x0020
	StatusSpecific   = 0x0040
)

// Event states of SCardGetStatusChange (pcsclite.h.in:265-276; the same
// on Windows). The high 16 bits of dwEventState count the card events of
// the reader, or the readers for the PnP reader.
const (
	StateUnaware     = 0x0000
	StateIgnore      = 0x0001
	StateChanged     = 0x0002
	StateUnknown     = 0x0004
	StateUnavailable = 0x0008
	StateEmpty       = 0x0010
	StatePresent     = 0x0020
	StateAtrMatch    = 0x0040
	StateExclusive   = 0x0080
	StateInUse       = 0x0100
	StateMute        = 0x0200
	StateUnpowered   = 0x0400
)

// PnPNotification is the pseudo reader whose state changes when a reader
// is added or removed (Windows SCardGetStatusChange documentation;
// pcsc-lite winscard_clnt.c supports it since 1.6.0). macOS has none.
const PnPNotification = `\\?PnP?\Notification`

// Sizes from pcsclite.h.in:59, 285-299.
const (
	MaxATRSize            = 33
	MaxBufferSize         = 264
	MaxBufferSizeExtended = 4 + 3 + 1<<16 + 3 + 2
)

// Infinite is the timeout that never expires (INFINITE, 0xFFFFFFFF).
const Infinite time.Duration = -1

// ReaderState is one SCARD_READERSTATE of SCardGetStatusChange.
type ReaderState struct {
	Reader       string
	CurrentState uint32
	EventState   uint32
	ATR          []byte // up to the ABI's ATR size; set by the call
}

// CardStatus is what SCardStatus says about a card.
type CardStatus struct {
	Reader   string
	State    uint32 // pcsc-lite's bit field, Status*
	Protocol uint32
	ATR      []byte
}

// IORequest is SCARD_IO_REQUEST without its length, which the backend
// sets to its own sizeof.
type IORequest struct{ Protocol uint32 }

// Library is the PC/SC API. Every method is safe for concurrent use as
// far as the host library is (pcsc-lite and winscard.dll serialise calls
// on one context themselves). Errors are Codes, or a *LoadError when the
// library could not be loaded.
type Library interface {
	EstablishContext(scope uint32) (Context, error)
	ReleaseContext(ctx Context) error
	ListReaders(ctx Context) ([]string, error)
	// GetStatusChange waits up to timeout (Infinite: forever) for a
	// state in states to differ from its CurrentState, and sets the
	// EventState and ATR of each.
	GetStatusChange(ctx Context, timeout time.Duration, states []ReaderState) error
	Cancel(ctx Context) error
	Connect(ctx Context, reader string, share, protocols uint32) (Card, uint32, error)
	Reconnect(card Card, share, protocols, initialization uint32) (uint32, error)
	Disconnect(card Card, disposition uint32) error
	BeginTransaction(card Card) error
	EndTransaction(card Card, disposition uint32) error
	// Transmit sends an APDU with the send PCI's protocol and reads the
	// response into recv; it returns the response length and the
	// receive PCI's protocol. On InsufficientBuffer, n is the length
	// needed when the library says it.
	Transmit(card Card, send IORequest, apdu, recv []byte) (n int, recvProtocol uint32, err error)
	// Control sends a control code in pcsc-lite's numbering
	// (SCARD_CTL_CODE(c) = 0x42000000+c).
	Control(card Card, code uint32, in, out []byte) (int, error)
	Status(card Card) (CardStatus, error)
	// GetAttrib reads an attribute into buf and returns its length;
	// on InsufficientBuffer, the length needed.
	GetAttrib(card Card, id uint32, buf []byte) (int, error)
	SetAttrib(card Card, id uint32, value []byte) error
	// Features says what the host's PC/SC can do beyond the calls.
	Features() Features
	// String names the library for logs: "libpcsclite.so.1".
	String() string
}

// Features are the differences between PC/SC implementations that a
// daemon built on Library must know.
type Features struct {
	// PnP: GetStatusChange on PnPNotification reports reader arrival
	// and removal. macOS has no such reader: poll ListReaders.
	PnP bool
	// EventCounts: dwEventState carries the card event count in its high
	// 16 bits (pcsc-lite, Windows; not macOS).
	EventCounts bool
	// BlockingWait: GetStatusChange blocks until a state differs from
	// dwCurrentState. False under Wine, whose SCardGetStatusChangeW
	// returns at once; a caller must compare states and pace itself.
	BlockingWait bool
}

// ServiceWaiter is implemented by libraries whose service starts on
// demand (Windows' Smart Card service starts when a reader is attached):
// WaitService blocks until it runs or timeout passes.
type ServiceWaiter interface {
	WaitService(timeout time.Duration) error
}
