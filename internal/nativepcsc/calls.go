package nativepcsc

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

// buffers holds the buffers of TRANSMIT and CONTROL, so that an idle
// connection holds none: 4 KiB ones for short APDUs, 64 KiB for extended.
var buffers [2]sync.Pool
var bufferData = [2]int{4096, pcsc.MaxBufferSizeExtended} // what a buffer of each pool holds

const replyRoom = pcsc.TransmitSize // room for the reply's struct before the data (replyData)

// buffer returns a pooled buffer for n bytes of data after replyRoom.
func buffer(n uint32) *[]byte {
	i := min(1, int(n)/(bufferData[0]+1)) // 0 up to 4 KiB, else 1
	if b, ok := buffers[i].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, replyRoom+bufferData[i])
	return &b
}

func putBuffer(b *[]byte) { buffers[min(1, len(*b)/(replyRoom+bufferData[1]))].Put(b) }

// staleContext reports errors after which a host context is worth
// establishing again: the host service restarted under it.
func staleContext(err error) bool {
	return errors.Is(err, scard.InvalidHandle) || errors.Is(err, scard.NoService) ||
		errors.Is(err, scard.ServiceStopped) || errors.Is(err, scard.CommError)
}

// hostContext returns the host context of gc, establishing it when it
// has none or one of an older service generation.
func (c *conn) hostContext(gc *gcontext, fresh bool) (scard.Context, error) {
	gen := c.h.generation()
	if gc.has && gc.gen == gen && !fresh {
		return gc.host, nil
	}
	if gc.has {
		c.s.lib.ReleaseContext(gc.host)
		gc.has = false
	}
	h, err := c.s.lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		return 0, err
	}
	gc.host, gc.has, gc.gen = h, true, gen
	return h, nil
}

// card returns the connection's card named by the handle at the start of
// body, or errForeignHandle.
func (c *conn) card(body []byte) (*gcard, error) {
	if gc, ok := c.cards[le.Uint32(body)]; ok {
		return gc, nil
	}
	return nil, errForeignHandle
}

// cardCall serves the calls on a card, and CONNECT.
func (c *conn) cardCall(cmd uint32, body []byte) error {
	lib := c.s.lib
	if cmd == pcsc.CmdConnect {
		return c.connect(body)
	}
	card, err := c.card(body)
	if err != nil {
		return err
	}
	switch cmd {
	case pcsc.CmdReconnect:
		var rs pcsc.ReconnectStruct
		binary.Decode(body, le, &rs)
		p, err := lib.Reconnect(card.host, rs.ShareMode, rs.PreferredProtocols, rs.Initialization)
		rs.ActiveProtocol, rs.RV = p, uint32(scard.CodeOf(err))
		if err == nil {
			c.h.setProtocol(card.reader, p)
		}
		return c.reply(&rs)
	case pcsc.CmdDisconnect:
		var ds pcsc.DisconnectStruct
		binary.Decode(body, le, &ds)
		err := lib.Disconnect(card.host, ds.Disposition)
		ds.RV = uint32(scard.CodeOf(err))
		if err == nil || card.ctx.gen != c.h.generation() {
			ds.RV = 0
			delete(c.cards, card.handle)
			c.s.freeHandle(card.handle)
		}
		return c.reply(&ds)
	case pcsc.CmdBeginTransaction:
		cs := pcsc.CardStruct{Card: card.handle}
		cs.RV = uint32(scard.CodeOf(lib.BeginTransaction(card.host)))
		return c.reply(&cs)
	case pcsc.CmdEndTransaction:
		var es pcsc.EndStruct
		binary.Decode(body, le, &es)
		es.RV = uint32(scard.CodeOf(lib.EndTransaction(card.host, es.Disposition)))
		return c.reply(&es)
	case pcsc.CmdStatus:
		// The client reads name, state, protocol and ATR from the reader
		// array; the daemon answers rv only (src/winscard_svc.c STATUS).
		cs := pcsc.CardStruct{Card: card.handle}
		_, err := lib.Status(card.host)
		cs.RV = uint32(scard.CodeOf(err))
		return c.reply(&cs)
	case pcsc.CmdTransmit:
		return c.transmit(card, body)
	case pcsc.CmdControl:
		return c.control(card, body)
	case pcsc.CmdGetAttrib:
		var gs pcsc.GetSetStruct
		binary.Decode(body, le, &gs)
		n, err := lib.GetAttrib(card.host, gs.AttrID, gs.Attr[:gs.AttrLen]) // AttrLen ≤ 264: checked by the scanner
		gs.RV = uint32(scard.CodeOf(err))
		if err == nil || errors.Is(err, scard.InsufficientBuffer) {
			gs.AttrLen = uint32(n)
		}
		return c.reply(&gs)
	case pcsc.CmdSetAttrib:
		var gs pcsc.GetSetStruct
		binary.Decode(body, le, &gs)
		gs.RV = uint32(scard.CodeOf(lib.SetAttrib(card.host, gs.AttrID, gs.Attr[:gs.AttrLen])))
		return c.reply(&gs)
	}
	return pcsc.ErrProtocol // the scanner admits no other command
}

// connect serves SCARD_CONNECT: the reader must be one the hub lists, by
// the name guests see.
func (c *conn) connect(body []byte) error {
	var cs pcsc.ConnectStruct
	binary.Decode(body, le, &cs)
	cs.Reader[len(cs.Reader)-1] = 0 // as pcscd does, src/winscard_svc.c:567
	name := string(cString(cs.Reader[:]))
	cs.Card, cs.ActiveProtocol = 0, 0
	gc, ok := c.contexts[cs.Context]
	host, known := c.h.hostName(name)
	switch {
	case !ok:
		cs.RV = uint32(scard.InvalidHandle)
	case !known:
		cs.RV = uint32(scard.UnknownReader)
	case len(c.cards) >= c.s.cfg.MaxCards:
		cs.RV = uint32(scard.NoMemory)
	default:
		card, proto, err := c.connectHost(gc, host, cs.ShareMode, cs.PreferredProtocols)
		cs.RV = uint32(scard.CodeOf(err))
		if err == nil {
			h := c.s.newHandle()
			c.cards[h] = &gcard{handle: h, ctx: gc, host: card, reader: name}
			cs.Card, cs.ActiveProtocol = h, proto
			c.h.setProtocol(name, proto)
		}
	}
	return c.reply(&cs)
}

func (c *conn) connectHost(gc *gcontext, reader string, share, protocols uint32) (scard.Card, uint32, error) {
	for try := range 2 {
		hc, err := c.hostContext(gc, try > 0)
		if err != nil {
			return 0, 0, err
		}
		card, proto, err := c.s.lib.Connect(hc, reader, share, protocols)
		if err == nil || !staleContext(err) {
			return card, proto, err
		}
		if try == 1 {
			return 0, 0, err
		}
	}
	return 0, 0, scard.InternalError
}

// transmit serves SCARD_TRANSMIT as pcscd does (src/winscard_svc.c:726-780):
// the host call gets a full-size buffer, and a response longer than the
// guest's buffer is SCARD_E_INSUFFICIENT_BUFFER with the length needed.
func (c *conn) transmit(card *gcard, body []byte) error {
	var ts pcsc.TransmitStruct
	binary.Decode(body, le, &ts)
	in, out := buffer(ts.SendLength), buffer(ts.RecvLength)
	defer putBuffer(in)
	defer putBuffer(out)
	apdu, err := c.readData(*in, int(ts.SendLength)) // ≤ 65548: checked by the scanner
	if err != nil {
		return err
	}
	n, rproto, err := c.s.lib.Transmit(card.host, scard.IORequest{Protocol: ts.SendPciProtocol}, apdu, (*out)[replyRoom:])
	rv := scard.CodeOf(err)
	if rv == scard.Success && uint32(n) > ts.RecvLength {
		rv = scard.InsufficientBuffer
	}
	if rv == scard.Success || rv == scard.InsufficientBuffer {
		ts.RecvLength = uint32(n)
	}
	if rv == scard.Success {
		ts.RecvPciProtocol = rproto
	}
	ts.RV = uint32(rv)
	return c.replyData(&ts, rv, *out, n)
}

// control serves SCARD_CONTROL (src/winscard_svc.c:782-829).
func (c *conn) control(card *gcard, body []byte) error {
	var cs pcsc.ControlStruct
	binary.Decode(body, le, &cs)
	in, out := buffer(cs.SendLength), buffer(cs.RecvLength)
	defer putBuffer(in)
	defer putBuffer(out)
	data, err := c.readData(*in, int(cs.SendLength))
	if err != nil {
		return err
	}
	n, err := c.s.lib.Control(card.host, cs.ControlCode, data, (*out)[replyRoom:])
	rv := scard.CodeOf(err)
	if rv == scard.Success && uint32(n) > cs.RecvLength {
		rv = scard.InsufficientBuffer
	}
	cs.BytesReturned, cs.RV = uint32(n), uint32(rv)
	return c.replyData(&cs, rv, *out, n)
}

// replyData sends struct v and, when rv is success, the n bytes of data at
// buf[replyRoom:] right after it, in one write (one SSH packet or frame).
func (c *conn) replyData(v any, rv scard.Code, buf []byte, n int) error {
	start := replyRoom - binary.Size(v)
	if _, err := binary.Encode(buf[start:replyRoom], le, v); err != nil {
		return err
	}
	if rv != scard.Success {
		n = 0
	}
	return c.write(buf[start : replyRoom+min(n, len(buf)-replyRoom)])
}

// cString returns b up to its first NUL.
func cString(b []byte) []byte {
	for i, x := range b {
		if x == 0 {
			return b[:i]
		}
	}
	return b
}
