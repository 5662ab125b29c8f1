package pcsctest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Client is a pcsc-lite client library of one protocol version, on a raw
// connection, taking the same code paths as libpcsclite of that version
// (src/winscard_clnt.c of 2.2.3, 2.3.3 and 2.5.1): for tests of relays and
// of the proxy. Its methods are not safe for concurrent use, as one
// libpcsclite context is not.
type Client struct {
	Conn net.Conn
	// Version is what the library proposes in CMD_VERSION.
	Version pcsc.Version
	// Server is the version the daemon's reply named: libpcsclite's
	// Protocol_version, which picks the code paths.
	Server pcsc.Version
	// Slots is the library's PCSCLITE_MAX_READERS_CONTEXTS; 0 means 16.
	Slots int

	size int // the reader array size the 4.6 API last reported
}

// RVError is a PC/SC return code other than success.
type RVError uint32

func (e RVError) Error() string { return fmt.Sprintf("pcsc rv %#08x", uint32(e)) }

// Dial connects to socket and exchanges CMD_VERSION as a library
// proposing v does; with fallback (pcsc-lite 2.4.1 and later) it retries
// with the daemon's version once rejected. A rejection ends in an RVError.
func Dial(socket string, v pcsc.Version, fallback bool) (*Client, error) {
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &Client{Conn: nc, Version: v}
	var buf [pcsc.VersionSize]byte
	propose := v
	for try := 0; ; try++ {
		if _, err := nc.Write(pcsc.AppendVersionRequest(nil, propose)); err != nil {
			nc.Close()
			return nil, err
		}
		r, err := pcsc.ReadVersionReply(nc, &buf)
		if err != nil {
			nc.Close()
			return nil, err
		}
		if r.RV == pcsc.ReturnServiceStopped && fallback && try == 0 && r.Version.Major == 4 && r.Version.Minor >= 4 {
			propose = r.Version
			continue
		}
		if !r.Accepted() {
			nc.Close()
			return nil, RVError(r.RV)
		}
		c.Server = r.Version
		return c, nil
	}
}

// Close closes the connection, as the library does after releasing the
// context.
func (c *Client) Close() error { return c.Conn.Close() }

// newAPI reports whether the library uses the reader state API of 4.6.
func (c *Client) newAPI() bool { return c.Version.Minor >= 6 && c.Server.Minor >= 6 }

func (c *Client) slots() int {
	if c.Slots > 0 {
		return c.Slots
	}
	return pcsc.DefaultSlots
}

// call sends a request with a struct (nil for none) and data, and decodes
// the reply struct into rep (nil for none).
func (c *Client) call(cmd uint32, req any, data []byte, rep any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = binary.Append(nil, le, req); err != nil {
			return err
		}
	}
	msg := le.AppendUint32(nil, uint32(len(body)))
	msg = le.AppendUint32(msg, cmd)
	msg = append(append(msg, body...), data...)
	if _, err := c.Conn.Write(msg); err != nil {
		return err
	}
	if rep == nil {
		return nil
	}
	buf := make([]byte, binary.Size(rep))
	if _, err := io.ReadFull(c.Conn, buf); err != nil {
		return err
	}
	_, err := binary.Decode(buf, le, rep)
	return err
}

func rvErr(rv uint32) error {
	if rv != pcsc.ReturnSuccess {
		return RVError(rv)
	}
	return nil
}

// Establish is SCardEstablishContext's request on the connection.
func (c *Client) Establish() (uint32, error) {
	s := pcsc.EstablishStruct{Scope: 2}
	if err := c.call(pcsc.CmdEstablishContext, &s, nil, &s); err != nil {
		return 0, err
	}
	return s.Context, rvErr(s.RV)
}

// Release is SCardReleaseContext's.
func (c *Client) Release(ctx uint32) error {
	s := pcsc.ReleaseStruct{Context: ctx}
	if err := c.call(pcsc.CmdReleaseContext, &s, nil, &s); err != nil {
		return err
	}
	return rvErr(s.RV)
}

// States fetches the reader array as getReaderStates does.
func (c *Client) States() ([]pcsc.ReaderState, error) {
	n := c.slots()
	cmd := uint32(pcsc.CmdGetReadersState)
	if c.newAPI() {
		var size int32
		if err := c.call(pcsc.CmdGetReadersStateSize, nil, nil, &size); err != nil {
			return nil, err
		}
		if int(size) < c.size {
			return nil, RVError(pcsc.ReturnUnsupported) // "should never happen"
		}
		c.size, n, cmd = int(size), int(size), pcsc.CmdGetReadersStateArray
	}
	if err := c.call(cmd, nil, nil, nil); err != nil {
		return nil, err
	}
	return c.readStates(n)
}

func (c *Client) readStates(n int) ([]pcsc.ReaderState, error) {
	states := make([]pcsc.ReaderState, n)
	buf := make([]byte, n*pcsc.ReaderStateSize)
	if _, err := io.ReadFull(c.Conn, buf); err != nil {
		return nil, err
	}
	if _, err := binary.Decode(buf, le, states); err != nil {
		return nil, err
	}
	return states, nil
}

// Readers is SCardListReaders: the names of the array's used slots.
func (c *Client) Readers() ([]string, error) {
	states, err := c.States()
	if err != nil {
		return nil, err
	}
	return Names(states), nil
}

// Names returns the reader names of the used records.
func Names(states []pcsc.ReaderState) []string {
	var names []string
	for _, s := range states {
		if n := pcsc.ReaderName(s.Name[:]); len(n) > 0 {
			names = append(names, string(n))
		}
	}
	return names
}

// Register is getReaderStatesAndRegisterForEvents: WAIT, then the array.
func (c *Client) Register() ([]pcsc.ReaderState, error) {
	if err := c.call(pcsc.CmdWaitReaderStateChange, nil, nil, nil); err != nil {
		return nil, err
	}
	if c.newAPI() {
		return c.States()
	}
	return c.readStates(c.slots())
}

// Wait reads the registration's signal, waiting at most d, and returns
// its rv: 0 for an event, SCARD_E_CANCELLED for a cancel.
func (c *Client) Wait(d time.Duration) (uint32, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	defer c.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	var s pcsc.WaitStruct
	buf := make([]byte, pcsc.WaitSize)
	if _, err := io.ReadFull(c.Conn, buf); err != nil {
		return 0, err
	}
	binary.Decode(buf, le, &s)
	return s.RV, nil
}

// Stop is unregisterFromEvents: STOP_WAITING, then the signal or its ack.
func (c *Client) Stop() (uint32, error) {
	var s pcsc.WaitStruct
	if err := c.call(pcsc.CmdStopWaiting, nil, nil, &s); err != nil {
		return 0, err
	}
	return s.RV, nil
}

// ReaderEvents is getReaderEvents; the library ignores rv.
func (c *Client) ReaderEvents() (uint32, error) {
	if c.Version.Minor < 5 || c.Server.Minor < 5 {
		return 0, RVError(pcsc.ReturnUnsupported)
	}
	var s pcsc.ReaderEventsStruct
	if err := c.call(pcsc.CmdGetReaderEvents, nil, nil, &s); err != nil {
		return 0, err
	}
	return s.ReaderEvents, nil
}

// Connect is SCardConnect (shared, T=0 or T=1).
func (c *Client) Connect(ctx uint32, reader string) (uint32, error) {
	s := pcsc.ConnectStruct{Context: ctx, ShareMode: 2, PreferredProtocols: 3}
	copy(s.Reader[:pcsc.MaxReaderName-1], reader)
	if err := c.call(pcsc.CmdConnect, &s, nil, &s); err != nil {
		return 0, err
	}
	return s.Card, rvErr(s.RV)
}

// Disconnect is SCardDisconnect (leave the card).
func (c *Client) Disconnect(card uint32) error {
	s := pcsc.DisconnectStruct{Card: card}
	if err := c.call(pcsc.CmdDisconnect, &s, nil, &s); err != nil {
		return err
	}
	return rvErr(s.RV)
}

// Transmit is SCardTransmit with a receive buffer of recv bytes.
func (c *Client) Transmit(card uint32, apdu []byte, recv int) ([]byte, error) {
	s := pcsc.TransmitStruct{Card: card, SendPciProtocol: 1, SendPciLength: 16, SendLength: uint32(len(apdu)),
		RecvPciProtocol: 3, RecvPciLength: 16, RecvLength: uint32(recv)}
	if err := c.call(pcsc.CmdTransmit, &s, apdu, &s); err != nil {
		return nil, err
	}
	if s.RV != pcsc.ReturnSuccess {
		return nil, RVError(s.RV)
	}
	resp := make([]byte, s.RecvLength)
	_, err := io.ReadFull(c.Conn, resp)
	return resp, err
}

// Control is SCardControl with a receive buffer of recv bytes.
func (c *Client) Control(card, code uint32, in []byte, recv int) ([]byte, error) {
	s := pcsc.ControlStruct{Card: card, ControlCode: code, SendLength: uint32(len(in)), RecvLength: uint32(recv)}
	if err := c.call(pcsc.CmdControl, &s, in, &s); err != nil {
		return nil, err
	}
	if s.RV != pcsc.ReturnSuccess {
		return nil, RVError(s.RV)
	}
	out := make([]byte, s.BytesReturned)
	_, err := io.ReadFull(c.Conn, out)
	return out, err
}

// Status is SCardStatus's request (the library takes the rest from the
// array it fetches first).
func (c *Client) Status(card uint32) error {
	s := pcsc.CardStruct{Card: card}
	if err := c.call(pcsc.CmdStatus, &s, nil, &s); err != nil {
		return err
	}
	return rvErr(s.RV)
}

// Cancel is SCardCancel: a connection of its own whose only message is
// SCARD_CANCEL, without CMD_VERSION.
func Cancel(socket string, ctx uint32) error {
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &Client{Conn: nc}
	s := pcsc.CancelStruct{Context: ctx}
	if err := c.call(pcsc.CmdCancel, &s, nil, &s); err != nil {
		return err
	}
	return rvErr(s.RV)
}

// Open connects to socket as libpcsclite 1.9.9 does (protocol 4.4) and
// returns the connection and the rv of CMD_VERSION, or of
// ESTABLISH_CONTEXT when the version was accepted: for tests of what a
// relay answers when it refuses a connection. The connection is nil when
// CMD_VERSION was refused; a hang or a close instead of an answer fails
// the test.
func Open(t testing.TB, socket string) (net.Conn, uint32) {
	t.Helper()
	var rv RVError
	c, err := Dial(socket, pcsc.V44, false)
	if errors.As(err, &rv) {
		return nil, uint32(rv)
	}
	if err != nil {
		t.Fatalf("CMD_VERSION: %v (a hang or a close instead of an answer)", err)
	}
	if _, err = c.Establish(); errors.As(err, &rv) {
		return c.Conn, uint32(rv)
	}
	if err != nil {
		t.Fatalf("ESTABLISH_CONTEXT: %v", err)
	}
	c.Conn.SetDeadline(time.Time{})
	return c.Conn, pcsc.ReturnSuccess
}
