package testenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// This file asks pcscd for its reader array with just enough of the client
// protocol (/work/shared/pcsc-protocol.md §1.2, §3, §10.1, §10.3), so the
// harness can wait for readers and cards without a C client. It does not use
// internal/pcsc: that package's own tests may want this harness, and an
// import in this direction would make a cycle.

// Reader states, the SCARD_* bits of a reader record (pcsc-lite 1.9.9
// src/PCSC/pcsclite.h.in:257-261).
const (
	scardAbsent  = 0x0002
	scardPresent = 0x0004
)

const (
	cmdVersion          = 0x11 // CMD_VERSION, src/winscard_msg.h
	cmdGetReadersState  = 0x12 // CMD_GET_READERS_STATE
	readerRecordSize    = 184  // READER_STATE, src/eventhandler.h (pcsc-protocol.md §3.1)
	maxReadersContexts  = 16   // PCSCLITE_MAX_READERS_CONTEXTS of Debian's build
	readerNameSize      = 128  // MAX_READERNAME
	versionReplySize    = 12   // struct version_struct: major, minor, rv
	readersStateMsgSize = maxReadersContexts * readerRecordSize
)

// readerRecord is the part of a READER_STATE record the harness needs.
type readerRecord struct {
	name   string
	events uint32 // eventCounter: card insertions and removals so far
	state  uint32 // readerState: scardAbsent, scardPresent, ...
}

// readReaderStates fetches pcscd's reader array the way a protocol 4.4 client
// does: CMD_VERSION proposing 4.4, then CMD_GET_READERS_STATE, answered with
// PCSCLITE_MAX_READERS_CONTEXTS records (unused ones have an empty name).
// Every pcsc-lite since 1.8.24 answers both, whatever version it speaks.
func readReaderStates(ctx context.Context, socket string) ([]readerRecord, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	le := binary.NativeEndian // pcsc-lite uses host byte order
	req := le.AppendUint32(nil, versionReplySize)
	req = le.AppendUint32(req, cmdVersion)
	req = le.AppendUint32(req, 4) // major
	req = le.AppendUint32(req, 4) // minor
	req = le.AppendUint32(req, 0) // rv
	req = le.AppendUint32(req, 0) // CMD_GET_READERS_STATE has no body
	req = le.AppendUint32(req, cmdGetReadersState)
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	var reply [versionReplySize]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return nil, fmt.Errorf("read CMD_VERSION reply: %w", err)
	}
	// pcscd does not make a rejected client stop: a strict 4.5 daemon
	// (pcsc-lite 2.3.0–2.4.0) answers CMD_GET_READERS_STATE all the same.
	if rv := le.Uint32(reply[8:]); rv != 0 && (le.Uint32(reply[0:]) != 4 || le.Uint32(reply[4:]) < 4) {
		return nil, fmt.Errorf("pcscd refused protocol 4.4: rv %#x", rv)
	}
	buf := make([]byte, readersStateMsgSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, fmt.Errorf("read reader states: %w", err)
	}
	var readers []readerRecord
	for rec := range slices.Chunk(buf, readerRecordSize) {
		name, _, _ := bytes.Cut(rec[:readerNameSize], []byte{0})
		if len(name) == 0 {
			continue
		}
		readers = append(readers, readerRecord{
			name:   string(name),
			events: le.Uint32(rec[128:]),
			state:  le.Uint32(rec[132:]),
		})
	}
	return readers, nil
}
