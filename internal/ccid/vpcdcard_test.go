//go:build linux

package ccid

import (
	"context"
	"encoding/binary"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// serveVPCDCard is a second virtual card for vsmartcard's vpcd (the
// protocol of internal/vcard: 2-byte big-endian frames, a 1-byte frame is a
// control command, 0x04 asks for the ATR): T=1 only, with helloApplet, which
// also answers long responses (INS B0) for the size tests.
func serveVPCDCard(ctx context.Context, conn net.Conn, atr []byte) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return err
		}
		quickAck(conn)
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			return err
		}
		quickAck(conn)
		var out []byte
		switch {
		case len(msg) == 1 && msg[0] == 0x04:
			out = atr
		case len(msg) > 1:
			out = helloApplet(msg)
		default:
			continue // power on/off, reset: no answer
		}
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
		if _, err := conn.Write(append(frame, out...)); err != nil {
			return err
		}
	}
}

// quickAck acknowledges vpcd's next segment at once (TCP_QUICKACK, reset by
// the kernel after each read): vpcd writes a frame's length and its payload
// separately, and a delayed ACK would hold the payload back ~40 ms (Nagle),
// as internal/vcard explains.
func quickAck(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
		}
	}
}
