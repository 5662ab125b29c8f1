package pcsc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultSocket is where pcscd listens unless it was built with another
// ipcdir (pcsc-lite meson option ipcdir, src/pcscd.h.in).
const DefaultSocket = "/run/pcscd/pcscd.comm"

// Command codes, from enum pcsc_msg_commands in src/winscard_msg.h.
const (
	CmdEstablishContext = 0x01
	CmdCancel           = 0x0D
	CmdVersion          = 0x11
)

// PC/SC return codes that cardshare reads or sends (src/PCSC/pcsclite.h.in).
const (
	ReturnSuccess        uint32 = 0
	ReturnNoService      uint32 = 0x8010001D // SCARD_E_NO_SERVICE: "Service not available."
	ReturnServiceStopped uint32 = 0x8010001E // SCARD_E_SERVICE_STOPPED: "Service was stopped."
)

// Sizes of the messages this package reads, from src/winscard_msg.h.
const (
	headerSize  = 8  // struct rxHeader: size, command
	versionSize = 12 // struct version_struct: major, minor, rv
	cancelSize  = 8  // struct cancel_struct: hContext, rv

	// OpeningMax is the largest opening message: a header and a version_struct.
	OpeningMax = headerSize + versionSize
)

var le = binary.LittleEndian

// ErrBadOpening means a connection did not start like a pcsc-lite client:
// the first message must be CMD_VERSION or, on the temporary socket that
// SCardCancel opens, SCARD_CANCEL.
var ErrBadOpening = errors.New("pcsc: connection does not start with CMD_VERSION or SCARD_CANCEL")

// Opening is the first message a client sends on a new connection.
type Opening struct {
	Command uint32  // CmdVersion or CmdCancel
	Version Version // the version the client proposes; zero for CmdCancel
}

// ReadOpening reads the first message of a client connection into buf and
// returns it decoded together with the raw bytes (a prefix of buf) that must
// be forwarded to the daemon. It reads at most OpeningMax bytes whatever the
// header says, so a hostile peer cannot make it allocate or wait for more.
func ReadOpening(r io.Reader, buf *[OpeningMax]byte) (Opening, []byte, error) {
	if _, err := io.ReadFull(r, buf[:headerSize]); err != nil {
		return Opening{}, nil, err
	}
	size, cmd := le.Uint32(buf[0:]), le.Uint32(buf[4:])
	switch {
	case cmd == CmdVersion && size == versionSize:
	case cmd == CmdCancel && size == cancelSize:
	default:
		return Opening{}, nil, fmt.Errorf("%w (header: size %d, command %#x)", ErrBadOpening, size, cmd)
	}
	msg := buf[:headerSize+size]
	if _, err := io.ReadFull(r, msg[headerSize:]); err != nil {
		return Opening{}, nil, noEOF(err)
	}
	o := Opening{Command: cmd}
	if cmd == CmdVersion {
		o.Version = Version{Major: le.Uint32(msg[8:]), Minor: le.Uint32(msg[12:])}
	}
	return o, msg, nil
}

// VersionReply is the daemon's answer to CMD_VERSION. It always carries the
// daemon's own version, whether it accepted the client or not.
type VersionReply struct {
	Version Version
	RV      uint32 // ReturnSuccess, or ReturnServiceStopped on a rejection
}

// Accepted reports whether the daemon accepted the client's version.
func (r VersionReply) Accepted() bool { return r.RV == ReturnSuccess }

// ReadVersionReply reads the 12-byte reply to CMD_VERSION into buf.
func ReadVersionReply(r io.Reader, buf *[versionSize]byte) (VersionReply, error) {
	if _, err := io.ReadFull(r, buf[:]); err != nil {
		return VersionReply{}, noEOF(err)
	}
	return VersionReply{
		Version: Version{Major: le.Uint32(buf[0:]), Minor: le.Uint32(buf[4:])},
		RV:      le.Uint32(buf[8:]),
	}, nil
}

// AppendVersionRequest appends a CMD_VERSION request proposing v.
func AppendVersionRequest(b []byte, v Version) []byte {
	b = le.AppendUint32(b, versionSize)
	b = le.AppendUint32(b, CmdVersion)
	b = le.AppendUint32(b, v.Major)
	b = le.AppendUint32(b, v.Minor)
	return le.AppendUint32(b, 0)
}

// AppendVersionReply appends a daemon's reply to CMD_VERSION.
func AppendVersionReply(b []byte, r VersionReply) []byte {
	b = le.AppendUint32(b, r.Version.Major)
	b = le.AppendUint32(b, r.Version.Minor)
	return le.AppendUint32(b, r.RV)
}

// AppendRefusal appends the reply a daemon would send to the opening
// message raw if it could not serve the client, with return code rv. A
// client reports rv from SCardEstablishContext or SCardCancel.
func AppendRefusal(b []byte, o Opening, raw []byte, rv uint32) []byte {
	if o.Command == CmdCancel {
		b = append(b, raw[headerSize:headerSize+4]...) // hContext, echoed
		return le.AppendUint32(b, rv)
	}
	return AppendVersionReply(b, VersionReply{Version: o.Version, RV: rv})
}

// noEOF turns an EOF in the middle of a message into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
