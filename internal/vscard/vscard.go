package vscard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is a message type (vscard_common.h:53-63, enum VSCMsgType).
type Type uint32

// Message types.
const (
	Init          Type = 1
	Error         Type = 2
	ReaderAdd     Type = 3
	ReaderRemove  Type = 4
	ATR           Type = 5
	CardRemove    Type = 6
	APDU          Type = 7
	Flush         Type = 8
	FlushComplete Type = 9
)

var typeNames = [...]string{
	Init: "Init", Error: "Error", ReaderAdd: "ReaderAdd", ReaderRemove: "ReaderRemove",
	ATR: "ATR", CardRemove: "CardRemove", APDU: "APDU", Flush: "Flush", FlushComplete: "FlushComplete",
}

func (t Type) String() string {
	if t >= Init && t <= FlushComplete {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint32(t))
}

// ErrorCode is the payload of an Error message (vscard_common.h:65-70).
type ErrorCode uint32

// Error codes. QEMU answers ReaderAdd, ReaderRemove, ATR and CardRemove
// with Success, and a refused ATR or an unknown message type with
// GeneralError (ccid-card-passthru.c:214-272).
const (
	Success              ErrorCode = 0
	GeneralError         ErrorCode = 1
	CannotAddMoreReaders ErrorCode = 2
	CardAlreadyInserted  ErrorCode = 3
)

func (c ErrorCode) String() string {
	switch c {
	case Success:
		return "success"
	case GeneralError:
		return "general error"
	case CannotAddMoreReaders:
		return "cannot add more readers"
	case CardAlreadyInserted:
		return "card already inserted"
	}
	return fmt.Sprintf("error code %d", uint32(c))
}

// Reader ids (vscard_common.h:72-73). QEMU's passthru card has one reader
// and sends every APDU with MinimalReaderID (ccid-card-passthru.c:96-97).
const (
	UndefinedReaderID uint32 = 0xffffffff
	MinimalReaderID   uint32 = 0
)

// Magic is the Init magic, the bytes "VSCD" in this order on the wire: the
// header macro builds a host-order word from them and QEMU sends it without
// htonl (vscard_common.h:75-83, ccid-card-passthru.c:113).
var Magic = [4]byte{'V', 'S', 'C', 'D'}

// Version is VSCARD_VERSION, MAKE_VERSION(0, 0, 2) = 2
// (vscard_common.h:33-38, 51).
const Version uint32 = 2

const (
	// HeaderSize is the size of a message header.
	HeaderSize = 12
	// MaxPayload bounds every payload Reader accepts: QEMU's own receive
	// buffer and its largest guest APDU are 64 KiB.
	MaxPayload = 64 << 10
	// MaxATR is the longest ATR QEMU accepts (MAX_ATR_SIZE,
	// ccid-card-passthru.c:53); a longer one is refused with GeneralError.
	MaxATR = 40
	// initFixed is the magic and the version, before the capabilities.
	initFixed = 8
)

// Errors of the codec. ReadMessage and the Parse functions wrap them.
var (
	// ErrTooLong: a header announced more than MaxPayload bytes.
	ErrTooLong = errors.New("vscard: message too long")
	// ErrMalformed: a payload does not have its type's layout.
	ErrMalformed = errors.New("vscard: malformed payload")
	// ErrBadMagic: an Init without the "VSCD" magic, so the peer is not a
	// VSCard endpoint (ccid-card-passthru.c:143-146 reports "wrong magic").
	ErrBadMagic = errors.New("vscard: wrong magic (not a VSCard peer)")
)

// Header is a message header.
type Header struct {
	Type     Type
	ReaderID uint32
	Length   uint32
}

// Message is one VSCard message. Payload aliases the Reader's buffer until
// its next call.
type Message struct {
	Type     Type
	ReaderID uint32
	Payload  []byte
}

// AppendMessage appends the encoding of a message to dst.
func AppendMessage(dst []byte, typ Type, readerID uint32, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(typ))
	dst = binary.BigEndian.AppendUint32(dst, readerID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// ParseHeader decodes a header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header of %d bytes", ErrMalformed, len(b))
	}
	return Header{
		Type:     Type(binary.BigEndian.Uint32(b[0:4])),
		ReaderID: binary.BigEndian.Uint32(b[4:8]),
		Length:   binary.BigEndian.Uint32(b[8:12]),
	}, nil
}

// Reader reads messages from a stream with one reusable buffer.
type Reader struct {
	r   io.Reader
	buf []byte
}

// NewReader returns a Reader of r. Wrap r in a bufio.Reader if it is
// unbuffered and messages are small; the bridge reads a socket directly.
func NewReader(r io.Reader) *Reader { return &Reader{r: r, buf: make([]byte, HeaderSize, 512)} }

// Next reads one message. Its payload is valid until the next call. A
// header announcing more than MaxPayload bytes returns ErrTooLong without
// reading further (the stream is then out of step: close it). A stream that
// ends between messages returns io.EOF; in the middle of one,
// io.ErrUnexpectedEOF.
func (r *Reader) Next() (Message, error) {
	if _, err := io.ReadFull(r.r, r.buf[:HeaderSize]); err != nil {
		return Message{}, err
	}
	h, _ := ParseHeader(r.buf[:HeaderSize])
	if h.Length > MaxPayload {
		return Message{}, fmt.Errorf("%w: %s of %d bytes (at most %d)", ErrTooLong, h.Type, h.Length, MaxPayload)
	}
	n := int(h.Length)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, err
	}
	return Message{Type: h.Type, ReaderID: h.ReaderID, Payload: p}, nil
}

// InitPayload is the payload of an Init message (VSCMsgInit,
// vscard_common.h:107-111): the magic, the version and capability words.
// QEMU sends one capability word, 0 (ccid-card-passthru.c:109-118).
type InitPayload struct {
	Magic        [4]byte
	Version      uint32
	Capabilities []uint32
}

// NewInit is the Init cardshare sends: the magic, Version and one zero
// capability word, as QEMU and libcacard do.
func NewInit() InitPayload {
	return InitPayload{Magic: Magic, Version: Version, Capabilities: []uint32{0}}
}

// Append appends the payload's encoding to dst.
func (p InitPayload) Append(dst []byte) []byte {
	dst = append(dst, p.Magic[:]...)
	dst = binary.BigEndian.AppendUint32(dst, p.Version)
	for _, c := range p.Capabilities {
		dst = binary.BigEndian.AppendUint32(dst, c)
	}
	return dst
}

// ParseInit decodes an Init payload: at least the magic and the version,
// then whole capability words. It does not check the magic: see CheckMagic.
func ParseInit(b []byte) (InitPayload, error) {
	if len(b) < initFixed || len(b)%4 != 0 {
		return InitPayload{}, fmt.Errorf("%w: Init of %d bytes", ErrMalformed, len(b))
	}
	p := InitPayload{Version: binary.BigEndian.Uint32(b[4:8])}
	copy(p.Magic[:], b[:4])
	for c := b[initFixed:]; len(c) > 0; c = c[4:] {
		p.Capabilities = append(p.Capabilities, binary.BigEndian.Uint32(c))
	}
	return p, nil
}

// CheckMagic returns ErrBadMagic unless p carries Magic.
func (p InitPayload) CheckMagic() error {
	if !bytes.Equal(p.Magic[:], Magic[:]) {
		return ErrBadMagic
	}
	return nil
}

// AppendError appends an Error payload (one big-endian code) to dst.
func AppendError(dst []byte, code ErrorCode) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(code))
}

// ParseError decodes an Error payload.
func ParseError(b []byte) (ErrorCode, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%w: Error of %d bytes", ErrMalformed, len(b))
	}
	return ErrorCode(binary.BigEndian.Uint32(b)), nil
}
