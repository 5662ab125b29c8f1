package ccid

import (
	"errors"
	"time"
)

// Host is the host's PC/SC API: only the calls the bridge makes. The
// adapter to internal/scard is NewSCardHost; tests use a fake.
type Host interface {
	// EstablishContext opens a PC/SC context (SCardEstablishContext,
	// system scope). The bridge opens one for watching readers and one per
	// emulated reader for its card, so that a blocking wait never delays
	// an APDU.
	EstablishContext() (HostContext, error)
}

// HostContext is one PC/SC context.
type HostContext interface {
	// ListReaders lists the reader names; none is an empty list, not an
	// error.
	ListReaders() ([]string, error)
	// GetStatusChange waits up to timeout for a state in states to differ
	// from its CurrentState and fills in EventState and ATR
	// (SCardGetStatusChange; PnPNotification as a reader name reports
	// reader arrival and removal). Returns ErrTimeout or ErrCancelled, and
	// then leaves states as they were.
	GetStatusChange(timeout time.Duration, states []ReaderState) error
	// Cancel ends a GetStatusChange under way (SCardCancel).
	Cancel() error
	// Connect connects to the card in reader, T=0 or T=1, shared or
	// exclusive (SCardConnect).
	Connect(reader string, exclusive bool) (HostCard, error)
	// Release releases the context (SCardReleaseContext).
	Release() error
}

// HostCard is a connection to a card.
type HostCard interface {
	// Transmit sends a command APDU and reads the response into recv,
	// returning its length (SCardTransmit).
	Transmit(apdu, recv []byte) (int, error)
	// BeginTransaction and EndTransaction (SCARD_LEAVE_CARD) lock the card
	// against other applications' commands.
	BeginTransaction() error
	EndTransaction() error
	// Reconnect acknowledges a reset by someone else (SCardReconnect,
	// SCARD_LEAVE_CARD), keeping the share mode.
	Reconnect() error
	// Disconnect leaves the card as it is (SCARD_LEAVE_CARD).
	Disconnect() error
}

// ReaderState is one SCARD_READERSTATE.
type ReaderState struct {
	Reader       string
	CurrentState uint32
	EventState   uint32
	ATR          []byte
}

// Reader state bits, in pcsc-lite's numbering (PCSC/pcsclite.h.in of
// pcsc-lite 1.9.9, SCARD_STATE_*). The high 16 bits of EventState count card
// insertions and removals.
const (
	StateChanged     = 0x0002
	StateUnknown     = 0x0004
	StateUnavailable = 0x0008
	StateEmpty       = 0x0010
	StatePresent     = 0x0020
	StateMute        = 0x0200
)

// PnPNotification is the pseudo-reader whose state changes when a reader
// is plugged or unplugged (pcsc-lite's "\\?PnP?\Notification").
const PnPNotification = `\\?PnP?\Notification`

// Errors a Host returns, for the bridge to branch on. An adapter wraps the
// native error with them (fmt.Errorf("%w: %w", ErrResetCard, code)).
var (
	ErrResetCard         = errors.New("card was reset")               // SCARD_W_RESET_CARD
	ErrRemovedCard       = errors.New("card was removed")             // SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD
	ErrTimeout           = errors.New("timeout")                      // SCARD_E_TIMEOUT
	ErrCancelled         = errors.New("cancelled")                    // SCARD_E_CANCELLED
	ErrSharingViolation  = errors.New("card is used exclusively")     // SCARD_E_SHARING_VIOLATION
	ErrReaderUnavailable = errors.New("reader is gone")               // SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER
	ErrNoService         = errors.New("PC/SC service is not running") // SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED
)
