package pcsc_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// exchange is a recorded connection from testdata/exchanges (see its
// README): what the client sent and what the server sent.
type exchange struct {
	name     string
	version  pcsc.Version
	slots    int
	segments []segment // in the order they crossed the wire
	requests []byte    // the client's segments joined
	replies  []byte    // the server's
}

type segment struct {
	client bool
	b      []byte
}

func loadExchanges(t testing.TB) []exchange {
	t.Helper()
	files, err := filepath.Glob("testdata/exchanges/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no exchanges: %v", err)
	}
	var xs []exchange
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		x, err := parseExchange(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		x.name = filepath.Base(f)
		xs = append(xs, x)
	}
	return xs
}

func parseExchange(s string) (exchange, error) {
	px, err := pcsctest.ParseExchange(s)
	x := exchange{version: px.Version, slots: px.Slots}
	for _, seg := range px.Segments {
		x.segments = append(x.segments, segment{seg.Client, seg.Bytes})
		if seg.Client {
			x.requests = append(x.requests, seg.Bytes...)
		} else {
			x.replies = append(x.replies, seg.Bytes...)
		}
	}
	return x, err
}

// scanned is a unit with its bytes.
type scanned struct {
	pcsc.Unit
	b []byte
}

// conversation frames both streams of a connection as they cross the
// wire, tracking what libpcsclite tracks: the replies it waits for, its
// registration, the last array size of 4.6.
type conversation struct {
	v          pcsc.Version
	slots      int
	rs         pcsc.RequestScanner
	ps         pcsc.ReplyScanner
	reqBuf     []byte // client bytes not yet framed
	repBuf     []byte
	queue      []pcsc.Reply
	registered bool
	size       int
	reqs, reps []scanned
}

func newConversation(v pcsc.Version, slots int) *conversation {
	return &conversation{v: v, slots: slots, rs: pcsc.RequestScanner{Version: v}}
}

// client adds bytes the client sent, handing the scanner at most chunk
// bytes more each time it asks (0: all at once), as a socket would.
func (c *conversation) client(b []byte, chunk int) error {
	return feed(b, chunk, &c.reqBuf, c.nextRequest)
}

func (c *conversation) server(b []byte, chunk int) error {
	return feed(b, chunk, &c.repBuf, c.nextReply)
}

func feed(b []byte, chunk int, buf *[]byte, next func() (bool, error)) error {
	if chunk <= 0 {
		chunk = len(b)
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		*buf, b = append(*buf, b[:n]...), b[n:]
		for {
			ok, err := next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
		}
	}
	return nil
}

func (c *conversation) nextRequest() (bool, error) {
	u, err := c.rs.Next(c.reqBuf)
	if err != nil || u.Len == 0 {
		return false, err
	}
	c.reqs = append(c.reqs, scanned{u, bytes.Clone(c.reqBuf[:u.Len])})
	c.reqBuf = c.reqBuf[u.Len:]
	if u.Kind == pcsc.KindRequest {
		if pcsc.Registers(u.Command) {
			c.registered = true
		}
		if r, ok := pcsc.ReplyTo(u.Command, c.v, c.slots, -1); ok {
			c.queue = append(c.queue, r)
		}
	}
	return true, nil
}

func (c *conversation) nextReply() (bool, error) {
	var want *pcsc.Reply
	if len(c.queue) > 0 {
		want = &c.queue[0]
		if want.Command == pcsc.CmdGetReadersStateArray {
			want.Records = c.size
		}
	}
	u, err := c.ps.Next(c.repBuf, want, c.registered)
	if err != nil || u.Len == 0 {
		return false, err
	}
	b := bytes.Clone(c.repBuf[:u.Len])
	c.reps = append(c.reps, scanned{u, b})
	c.repBuf = c.repBuf[u.Len:]
	switch {
	case u.Kind == pcsc.KindSignal:
		c.registered = false
	case u.Kind == pcsc.KindArraySize:
		c.size = int(binary.LittleEndian.Uint32(b))
		c.queue = c.queue[1:]
	case u.Last:
		c.queue = c.queue[1:]
	}
	return true, nil
}

// play frames a recorded exchange.
func play(x exchange, chunk int) (*conversation, error) {
	c := newConversation(x.version, x.slots)
	for _, s := range x.segments {
		f := c.server
		if s.client {
			f = c.client
		}
		if err := f(s.b, chunk); err != nil {
			return c, err
		}
	}
	return c, nil
}

// scanRequests frames a client's stream.
func scanRequests(v pcsc.Version, in []byte, chunk int) ([]scanned, error) {
	c := newConversation(v, pcsc.DefaultSlots)
	err := c.client(in, chunk)
	return c.reqs, err
}

// roundTrip decodes a fixed unit into its Go struct and encodes it again;
// the bytes must not change.
func roundTrip(u scanned) error {
	var v any
	b := u.b
	switch u.Kind {
	case pcsc.KindRequest:
		if size, cmd := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]); size != uint32(len(b)-8) || cmd != u.Command {
			return fmt.Errorf("header %x does not match the unit", b[:8])
		}
		v, b = pcsc.NewRequest(u.Command), b[8:]
	case pcsc.KindReply:
		v = pcsc.NewReply(u.Command)
	case pcsc.KindRecord:
		v = new(pcsc.ReaderState)
	case pcsc.KindSignal:
		v = new(pcsc.WaitStruct)
	case pcsc.KindArraySize:
		v = new(int32)
	default:
		return nil
	}
	if v == nil {
		if len(b) != 0 {
			return fmt.Errorf("%s: %d bytes but no struct", pcsc.CommandName(u.Command), len(b))
		}
		return nil
	}
	if n, err := binary.Decode(b, binary.LittleEndian, v); err != nil || n != len(b) {
		return fmt.Errorf("%s: decode %d of %d bytes: %v", pcsc.CommandName(u.Command), n, len(b), err)
	}
	again, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, b) {
		return fmt.Errorf("%s: round trip\n got %x\nwant %x", pcsc.CommandName(u.Command), again, b)
	}
	return nil
}

func joined(us []scanned) []byte {
	var b []byte
	for _, u := range us {
		b = append(b, u.b...)
	}
	return b
}

// TestExchanges frames every recorded exchange whole and in pieces: every
// byte belongs to a unit, every struct round-trips.
func TestExchanges(t *testing.T) {
	for _, x := range loadExchanges(t) {
		t.Run(x.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 7} {
				c, err := play(x, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if len(c.reqBuf) > 0 || len(c.repBuf) > 0 {
					t.Fatalf("chunk %d: %d request and %d reply bytes not framed", chunk, len(c.reqBuf), len(c.repBuf))
				}
				if got := joined(c.reqs); !bytes.Equal(got, x.requests) {
					t.Fatalf("requests framed %d of %d bytes", len(got), len(x.requests))
				}
				if got := joined(c.reps); !bytes.Equal(got, x.replies) {
					t.Fatalf("replies framed %d of %d bytes", len(got), len(x.replies))
				}
				for _, u := range append(c.reqs, c.reps...) {
					if err := roundTrip(u); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
}

func TestRequestScannerRejects(t *testing.T) {
	tests := []struct {
		name string
		v    pcsc.Version
		in   string
		err  string
	}{
		{"0x15 in 4.4", pcsc.V44, "00000000 15000000", "CMD_GET_READER_EVENTS, which protocol 4.4 does not have"},
		{"0x16 in 4.5", pcsc.V45, "00000000 16000000", "CMD_GET_READERS_STATE_SIZE"},
		{"list readers", pcsc.V46, "00000000 03000000", "SCARD_LIST_READERS"},
		{"unknown", pcsc.V46, "00000000 18000000", "command 0x18"},
		{"zero", pcsc.V46, "00000000 00000000", "command 0x0"},
		{"4.3 wait body", pcsc.V44, "08000000 13000000 00000000 00000000", "8-byte struct, want 0"},
		{"version size 16", pcsc.V44, "10000000 11000000", "16-byte struct, want 12"},
		{"huge apdu", pcsc.V44, "20000000 09000000 | 4cf54f5a 01000000 10000000 0d000100 00000000 00000000 02010000 00000000", "cbSendLength 65549"},
		{"huge control", pcsc.V44, "18000000 0a000000 | 4cf54f5a 480d0042 ffffffff 00010000 00000000 00000000", "cbSendLength 4294967295"},
		{"attr too long", pcsc.V44, "18010000 10000000 | 4cf54f5a 03030900 zero*264 09010000 00000000", "cbAttrLen 265"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := pcsctest.ParseBytes(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			_, err = scanRequests(tt.v, in, 0)
			if !pcsc.IsProtocol(err) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v, want a protocol error containing %q", err, tt.err)
			}
		})
	}
}

func TestReplyScannerRejects(t *testing.T) {
	var s pcsc.ReplyScanner
	if _, err := s.Next([]byte{1}, nil, false); !pcsc.IsProtocol(err) {
		t.Errorf("unasked bytes: %v", err)
	}
	for _, size := range []string{"00000000", "ffffffff", "01040000"} {
		var s pcsc.ReplyScanner
		b, _ := pcsctest.ParseBytes(size)
		if _, err := s.Next(b, &pcsc.Reply{Command: pcsc.CmdGetReadersStateSize}, false); !pcsc.IsProtocol(err) {
			t.Errorf("array size %s: %v", size, err)
		}
	}
	var s2 pcsc.ReplyScanner
	b, _ := pcsctest.ParseBytes("4cf54f5a 01000000 10000000 05000000 01000000 00000000 0d000100 00000000")
	if _, err := s2.Next(b, &pcsc.Reply{Command: pcsc.CmdTransmit}, false); !pcsc.IsProtocol(err) {
		t.Errorf("response of 65549 bytes: %v", err)
	}
	// A failed TRANSMIT carries no data, whatever pcbRecvLength says.
	var s3 pcsc.ReplyScanner
	b, _ = pcsctest.ParseBytes("4cf54f5a 01000000 10000000 05000000 01000000 00000000 ffffffff 08001080")
	if u, err := s3.Next(b, &pcsc.Reply{Command: pcsc.CmdTransmit}, false); err != nil || !u.Last {
		t.Errorf("failed transmit: %+v, %v", u, err)
	}
}

// While a WAIT registration is armed, the signal is told from a reply
// by its bytes: a zero first word is never a reply to
// CMD_GET_READER_EVENTS, nor a used reader record; 8 zero bytes before a
// record are the signal unless 184 bytes make an unused slot.
func TestReplyScannerSignal(t *testing.T) {
	sig, _ := pcsctest.ParseBytes("00000000 00000000")
	var s pcsc.ReplyScanner
	u, err := s.Next(sig, nil, true)
	if err != nil || u.Kind != pcsc.KindSignal || u.Len != 8 {
		t.Fatalf("signal: %+v, %v", u, err)
	}
	u, err = s.Next(sig, &pcsc.Reply{Command: pcsc.CmdGetReaderEvents}, true)
	if err != nil || u.Kind != pcsc.KindSignal {
		t.Fatalf("signal before CMD_GET_READER_EVENTS's reply: %+v, %v", u, err)
	}
	events, _ := pcsctest.ParseBytes("02000000 00000000")
	u, err = s.Next(events, &pcsc.Reply{Command: pcsc.CmdGetReaderEvents}, true)
	if err != nil || u.Kind != pcsc.KindReply {
		t.Fatalf("reply while armed: %+v, %v", u, err)
	}
	if u, _ := s.Next(sig[:7], nil, true); u.Len != 0 {
		t.Errorf("7 bytes framed as %+v", u)
	}
	u, err = s.Next(sig, &pcsc.Reply{Command: pcsc.CmdStopWaiting}, true)
	if err != nil || u.Kind != pcsc.KindSignal || !u.Last {
		t.Fatalf("answer to STOP_WAITING: %+v, %v", u, err)
	}
	if _, err := s.Next(events, &pcsc.Reply{Command: pcsc.CmdStopWaiting}, true); !pcsc.IsProtocol(err) {
		t.Errorf("STOP_WAITING answered with %x: %v", events, err)
	}

	array := &pcsc.Reply{Command: pcsc.CmdGetReadersState, Records: 2}
	unused := make([]byte, pcsc.ReaderStateSize)
	unused[176] = 34
	for _, c := range []struct {
		name string
		b    []byte
		kind pcsc.Kind
	}{
		{"unused slot", unused, pcsc.KindRecord},
		{"all-zero slot", make([]byte, pcsc.ReaderStateSize), pcsc.KindRecord},
		{"signal, then a used slot", append(bytes.Clone(sig), "Virtual PCD 00 00"...), pcsc.KindSignal},
		{"cancel signal", append([]byte{0, 0, 0, 0, 2, 0, 0x10, 0x80}, unused...), pcsc.KindSignal},
	} {
		var s pcsc.ReplyScanner
		b := append(c.b, make([]byte, 2*pcsc.ReaderStateSize)...)
		if u, _ := s.Next(b[:8], array, true); u.Len != 0 && c.kind == pcsc.KindRecord {
			t.Errorf("%s: decided on 8 bytes: %+v", c.name, u)
		}
		u, err := s.Next(b, array, true)
		if err != nil || u.Kind != c.kind {
			t.Errorf("%s: %+v, %v; want kind %d", c.name, u, err, c.kind)
		}
	}
}

func TestCommandName(t *testing.T) {
	for cmd, want := range map[uint32]string{
		0x01: "SCARD_ESTABLISH_CONTEXT", 0x09: "SCARD_TRANSMIT", 0x0C: "SCARD_GET_STATUS_CHANGE",
		0x14: "CMD_STOP_WAITING_READER_STATE_CHANGE", 0x17: "CMD_GET_READERS_STATE_ARRAY", 0x42: "command 0x42",
	} {
		if got := pcsc.CommandName(cmd); got != want {
			t.Errorf("CommandName(%#x) = %q, want %q", cmd, got, want)
		}
	}
}
