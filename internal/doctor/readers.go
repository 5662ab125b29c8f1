package doctor

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// The reader list for doctor, read the way a pcsc-lite 4.4/4.5 client's
// getReaderStates does it (pcsc-lite src/winscard_clnt.c): after the
// CMD_VERSION handshake, a header {size 0, CMD_GET_READERS_STATE} and a
// reply of PCSCLITE_MAX_READERS_CONTEXTS (16 upstream) READER_STATE records
// of 184 bytes (src/eventhandler.h, pubReaderStatesList; src/readers.h in
// 2.5). Servers of protocol 4.6 still answer this old request with 16
// records (pcsc-lite 2.2.3 src/winscard_svc.c:420-431 sends the whole
// array; 2.5.1 src/winscard_svc.c:918-951 pads the old API's reply to 16).

// scardPresent is SCARD_PRESENT in a record's readerState.
const scardPresent = 0x4

// reader is one entry of pcscd's reader list.
type reader struct {
	Name string
	Card bool
}

// listReaders asks the pcscd at socket for its readers. It proposes 4.4
// when d accepts it, else d's own version, and reads exactly 16 records
// within the deadline, so a daemon built with more reader slots (Fedora's
// patch raises them to 48) or a misbehaving one cannot make it read more or
// wait forever.
func listReaders(ctx context.Context, socket string, d pcsc.Daemon) ([]reader, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to pcscd: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)

	v := pcsc.V44
	if !d.Accepts(v) {
		v = d.Version
	}
	if _, err := c.Write(pcsc.AppendVersionRequest(nil, v)); err != nil {
		return nil, fmt.Errorf("CMD_VERSION: %w", err)
	}
	var vb [12]byte
	r, err := pcsc.ReadVersionReply(c, &vb)
	if err != nil {
		return nil, fmt.Errorf("CMD_VERSION: %w", err)
	}
	if !r.Accepted() {
		return nil, fmt.Errorf("pcscd refused protocol %s (it speaks %s)", v, r.Version)
	}
	var req []byte
	req = binary.LittleEndian.AppendUint32(req, 0)
	req = binary.LittleEndian.AppendUint32(req, pcsc.CmdGetReadersState)
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("CMD_GET_READERS_STATE: %w", err)
	}
	buf := make([]byte, pcsc.DefaultSlots*pcsc.ReaderStateSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, fmt.Errorf("CMD_GET_READERS_STATE: read %d bytes: %w", len(buf), err)
	}
	return parseReaderStates(buf), nil
}

// parseReaderStates reads the names and card presence of the used slots.
func parseReaderStates(buf []byte) []reader {
	var rs []reader
	for rec := range slices.Chunk(buf, pcsc.ReaderStateSize) {
		var s pcsc.ReaderState
		if _, err := binary.Decode(rec, binary.LittleEndian, &s); err != nil || s.Name[0] == 0 {
			continue
		}
		rs = append(rs, reader{Name: string(pcsc.CString(s.Name[:])), Card: s.State&scardPresent != 0})
	}
	return rs
}
