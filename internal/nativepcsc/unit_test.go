package nativepcsc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
)

var le = binary.LittleEndian

const (
	fakeReader  = "Fake Reader 00 00"
	fakeReader2 = "Fake Reader 00 01"
)

var fakeATR = []byte{0x3B, 0x02, 0x14, 0x50}

func startFake(t testing.TB) (*scardtest.Fake, *nativepcsc.Source) {
	t.Helper()
	f := scardtest.NewFake(fakeReader, fakeReader2)
	src, err := nativepcsc.New(f, &nativepcsc.Config{MinPoll: 5 * time.Millisecond, MaxPoll: 200 * time.Millisecond, WriteTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return f, src
}

// raw is a guest connection that speaks the wire protocol by hand.
type raw struct {
	t testing.TB
	net.Conn
}

func dial(t testing.TB, src *nativepcsc.Source) *raw {
	t.Helper()
	c, err := src.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &raw{t, c}
}

// send writes a request: header, struct v (nil for none), data.
func (r *raw) send(cmd uint32, v any, data []byte) {
	r.t.Helper()
	var body []byte
	if v != nil {
		body, _ = binary.Append(nil, le, v)
	}
	msg := le.AppendUint32(nil, uint32(len(body)))
	msg = le.AppendUint32(msg, cmd)
	msg = append(append(msg, body...), data...)
	if _, err := r.Write(msg); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads into v (a pointer to a struct) or n bytes.
func (r *raw) recv(v any) {
	r.t.Helper()
	b := make([]byte, binary.Size(v))
	if _, err := io.ReadFull(r, b); err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	binary.Decode(b, le, v)
}

func (r *raw) bytes(n int) []byte {
	r.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		r.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// closed checks that the daemon closed the connection.
func (r *raw) closed() {
	r.t.Helper()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); err == nil {
		r.t.Fatalf("connection open: read %d bytes", n)
	} else if errors.Is(err, errTimeout) || isTimeout(err) {
		r.t.Fatal("connection still open")
	}
}

var errTimeout = errors.New("timeout")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *raw) version(v pcsc.Version) pcsc.VersionStruct {
	r.send(pcsc.CmdVersion, &pcsc.VersionStruct{Major: v.Major, Minor: v.Minor}, nil)
	var vs pcsc.VersionStruct
	r.recv(&vs)
	return vs
}

func (r *raw) establish() uint32 {
	r.t.Helper()
	r.send(pcsc.CmdEstablishContext, &pcsc.EstablishStruct{Scope: 2}, nil)
	var es pcsc.EstablishStruct
	r.recv(&es)
	if es.RV != 0 || es.Context == 0 || es.Context > 0x7FFFFFFF {
		r.t.Fatalf("establish: %+v", es)
	}
	return es.Context
}

func (r *raw) connect(ctx uint32, reader string) pcsc.ConnectStruct {
	r.t.Helper()
	cs := pcsc.ConnectStruct{Context: ctx, ShareMode: 2, PreferredProtocols: 3}
	copy(cs.Reader[:], reader)
	r.send(pcsc.CmdConnect, &cs, nil)
	var rep pcsc.ConnectStruct
	r.recv(&rep)
	return rep
}

func names(arr []byte) []string {
	var out []string
	for i := 0; i+pcsc.ReaderStateSize <= len(arr); i += pcsc.ReaderStateSize {
		out = append(out, string(pcsc.ReaderName(arr[i:])))
	}
	return out
}

func TestVersions(t *testing.T) {
	_, src := startFake(t)
	for _, tc := range []struct {
		propose pcsc.Version
		want    pcsc.VersionStruct
	}{
		{pcsc.V44, pcsc.VersionStruct{Major: 4, Minor: 4}},
		{pcsc.V45, pcsc.VersionStruct{Major: 4, Minor: 5}},
		{pcsc.V46, pcsc.VersionStruct{Major: 4, Minor: 6}},
		{pcsc.Version{Major: 4, Minor: 7}, pcsc.VersionStruct{Major: 4, Minor: 6, RV: pcsc.ReturnServiceStopped}},
		{pcsc.V43, pcsc.VersionStruct{Major: 4, Minor: 6, RV: pcsc.ReturnServiceStopped}},
	} {
		r := dial(t, src)
		if got := r.version(tc.propose); got != tc.want {
			t.Errorf("CMD_VERSION %s: %+v, want %+v", tc.propose, got, tc.want)
		}
	}
	// A 2.5 client falls back on the same connection.
	r := dial(t, src)
	r.version(pcsc.Version{Major: 4, Minor: 7})
	if got := r.version(pcsc.V46); got.RV != 0 {
		t.Errorf("fallback: %+v", got)
	}
	d, err := src.Probe(t.Context())
	if err != nil || d != nativepcsc.Daemon || !d.Accepts(pcsc.V44) || !d.Accepts(pcsc.V45) {
		t.Errorf("Probe = %+v, %v", d, err)
	}
}

func TestReaderArrays(t *testing.T) {
	f, src := startFake(t)
	f.Insert(fakeReader, fakeATR)
	time.Sleep(50 * time.Millisecond)
	r := dial(t, src)
	r.version(pcsc.V44)
	r.send(pcsc.CmdGetReadersState, nil, nil)
	arr := r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)
	if n := names(arr); n[0] != fakeReader || n[1] != fakeReader2 || n[2] != "" {
		t.Fatalf("names %q", n[:3])
	}
	var rec pcsc.ReaderState
	binary.Decode(arr, le, &rec)
	if rec.State != 0x34 || rec.EventCounter != 1 || !bytes.Equal(rec.ATR[:rec.ATRLength], fakeATR) {
		t.Errorf("record %+v", rec)
	}

	r6 := dial(t, src)
	r6.version(pcsc.V46)
	r6.send(pcsc.CmdGetReadersStateSize, nil, nil)
	if n := le.Uint32(r6.bytes(4)); n != pcsc.DefaultSlots {
		t.Fatalf("array size %d", n)
	}
	r6.send(pcsc.CmdGetReadersStateArray, nil, nil)
	if !bytes.Equal(r6.bytes(pcsc.DefaultSlots*pcsc.ReaderStateSize), arr) {
		t.Error("4.6 array differs from the 4.4 one")
	}
	// 4.4 has no GET_READER_EVENTS: the connection closes, as pcscd's would.
	r.send(pcsc.CmdGetReaderEvents, nil, nil)
	r.closed()

	r5 := dial(t, src)
	r5.version(pcsc.V45)
	r5.send(pcsc.CmdGetReaderEvents, nil, nil)
	var ev1 pcsc.ReaderEventsStruct
	r5.recv(&ev1)
	f.AddReader("Fake Reader 01 00")
	time.Sleep(100 * time.Millisecond)
	r5.send(pcsc.CmdGetReaderEvents, nil, nil)
	var ev2 pcsc.ReaderEventsStruct
	r5.recv(&ev2)
	if ev2.ReaderEvents != ev1.ReaderEvents+1 {
		t.Errorf("reader events %d then %d", ev1.ReaderEvents, ev2.ReaderEvents)
	}
}

func TestWaitSignals(t *testing.T) {
	f, src := startFake(t)
	// 4.4: the dump at once, then the signal on an event.
	r := dial(t, src)
	r.version(pcsc.V44)
	r.establish()
	r.send(pcsc.CmdWaitReaderStateChange, nil, nil)
	r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)
	f.Insert(fakeReader, fakeATR)
	var w pcsc.WaitStruct
	r.recv(&w)
	if w != (pcsc.WaitStruct{}) {
		t.Errorf("event signal %+v", w)
	}
	// STOP while not registered: no answer; the next reply is the next request's.
	r.send(pcsc.CmdStopWaiting, nil, nil)
	r.send(pcsc.CmdStatus, &pcsc.CardStruct{Card: 0}, nil) // a foreign card: closes
	r.closed()

	// 4.6: no dump; CANCEL from another connection ends the wait.
	r6 := dial(t, src)
	r6.version(pcsc.V46)
	ctx := r6.establish()
	r6.send(pcsc.CmdWaitReaderStateChange, nil, nil)
	time.Sleep(50 * time.Millisecond)
	c := dial(t, src)
	c.send(pcsc.CmdCancel, &pcsc.CancelStruct{Context: ctx}, nil)
	var cs pcsc.CancelStruct
	c.recv(&cs)
	if cs != (pcsc.CancelStruct{Context: ctx}) {
		t.Errorf("cancel reply %+v", cs)
	}
	r6.recv(&w)
	if w.RV != pcsc.ReturnCancelled {
		t.Errorf("cancel signal %+v", w)
	}
	c = dial(t, src)
	c.send(pcsc.CmdCancel, &pcsc.CancelStruct{Context: 0x12345678}, nil)
	c.recv(&cs)
	if cs.RV != pcsc.ReturnInvalidHandle {
		t.Errorf("cancel of an unknown context %+v", cs)
	}
	// STOP while registered: answered with a zero signal.
	r6.send(pcsc.CmdWaitReaderStateChange, nil, nil)
	r6.send(pcsc.CmdStopWaiting, nil, nil)
	r6.recv(&w)
	if w != (pcsc.WaitStruct{}) {
		t.Errorf("stop %+v", w)
	}
}

func TestCardCalls(t *testing.T) {
	f, src := startFake(t)
	f.Insert(fakeReader, fakeATR)
	time.Sleep(50 * time.Millisecond)
	r := dial(t, src)
	r.version(pcsc.V44)
	if f.Contexts() != 1 {
		t.Errorf("host contexts before CONNECT: %d, want the event loop's only", f.Contexts())
	}
	ctx := r.establish()
	if got := r.connect(ctx, "No Such Reader"); got.RV != 0x80100009 {
		t.Errorf("unknown reader: %+v", got)
	}
	if got := r.connect(ctx^1, fakeReader); got.RV != pcsc.ReturnInvalidHandle {
		t.Errorf("foreign context: %+v", got)
	}
	if got := r.connect(ctx, fakeReader2); got.RV != 0x8010000C {
		t.Errorf("empty reader: %+v", got)
	}
	cs := r.connect(ctx, fakeReader)
	if cs.RV != 0 || cs.ActiveProtocol != 2 || string(cs.Reader[:len(fakeReader)]) != fakeReader {
		t.Fatalf("connect %+v", cs)
	}
	card := cs.Card
	// The largest response: 65,548 bytes.
	apdu := []byte{0xEE, 0x01, 0x00, 0x0C}
	r.send(pcsc.CmdTransmit, &pcsc.TransmitStruct{Card: card, SendPciProtocol: 2, SendPciLength: 16, SendLength: 4, RecvLength: pcsc.MaxBufferSizeExtended}, apdu)
	var ts pcsc.TransmitStruct
	r.recv(&ts)
	if ts.RV != 0 || ts.RecvLength != pcsc.MaxBufferSizeExtended {
		t.Fatalf("transmit %+v", ts)
	}
	resp := r.bytes(int(ts.RecvLength))
	if resp[65547] != byte(65547%256) {
		t.Error("response bytes")
	}
	// The largest request, echoed: too long for the guest's buffer.
	big := make([]byte, pcsc.MaxBufferSizeExtended)
	r.send(pcsc.CmdTransmit, &pcsc.TransmitStruct{Card: card, SendPciProtocol: 2, SendLength: uint32(len(big)), RecvLength: 300}, big)
	r.recv(&ts)
	if ts.RV != pcsc.ReturnInsufficientBuffer || ts.RecvLength != uint32(len(big))+2 {
		t.Errorf("transmit into a short buffer %+v", ts)
	}
	// Control echoes.
	r.send(pcsc.CmdControl, &pcsc.ControlStruct{Card: card, ControlCode: 0x42000001, SendLength: 3, RecvLength: 10}, []byte{1, 2, 3})
	var ctl pcsc.ControlStruct
	r.recv(&ctl)
	if ctl.RV != 0 || ctl.BytesReturned != 3 || !bytes.Equal(r.bytes(3), []byte{1, 2, 3}) {
		t.Errorf("control %+v", ctl)
	}
	gs := pcsc.GetSetStruct{Card: card, AttrID: scardtest.AttrATR, AttrLen: pcsc.MaxAttrSize}
	r.send(pcsc.CmdGetAttrib, &gs, nil)
	r.recv(&gs)
	if gs.RV != 0 || !bytes.Equal(gs.Attr[:gs.AttrLen], fakeATR) {
		t.Errorf("get attrib %+v", gs.AttrLen)
	}
	// A removed card.
	f.Remove(fakeReader)
	r.send(pcsc.CmdStatus, &pcsc.CardStruct{Card: card}, nil)
	var st pcsc.CardStruct
	r.recv(&st)
	if st.RV != 0x80100069 {
		t.Errorf("status after removal %+v", st)
	}
	// Release: the host context goes too.
	r.send(pcsc.CmdReleaseContext, &pcsc.ReleaseStruct{Context: ctx}, nil)
	var rs pcsc.ReleaseStruct
	r.recv(&rs)
	if rs.RV != 0 || f.Contexts() != 1 {
		t.Errorf("release %+v, host contexts %d", rs, f.Contexts())
	}
	// A length over the limit closes the connection and nothing else.
	other := dial(t, src)
	other.version(pcsc.V46)
	r.send(pcsc.CmdTransmit, &pcsc.TransmitStruct{Card: card, SendLength: pcsc.MaxBufferSizeExtended + 1}, nil)
	r.closed()
	other.establish()
}

// A guest that leaves without releasing anything leaves nothing behind.
func TestConnectionCleanup(t *testing.T) {
	f, src := startFake(t)
	f.Insert(fakeReader, fakeATR)
	time.Sleep(50 * time.Millisecond)
	for range 20 {
		r := dial(t, src)
		r.version(pcsc.V45)
		ctx := r.establish()
		if cs := r.connect(ctx, fakeReader); cs.RV != 0 {
			t.Fatalf("connect %+v", cs)
		}
		r.send(pcsc.CmdWaitReaderStateChange, nil, nil)
		r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)
		r.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Contexts() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d host contexts left, want the event loop's 1", f.Contexts())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Without PnP (macOS), readers are found by listing them: one plugged in
// later appears, and an empty list is no error.
func TestNoPnP(t *testing.T) {
	f := scardtest.NewFake()
	f.Feat.PnP, f.Feat.EventCounts = false, false
	src, err := nativepcsc.New(f, &nativepcsc.Config{MinPoll: 5 * time.Millisecond, MaxPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := dial(t, src)
	r.version(pcsc.V45)
	r.send(pcsc.CmdWaitReaderStateChange, nil, nil)
	r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)
	f.AddReader(fakeReader)
	var w pcsc.WaitStruct
	r.recv(&w) // the reader's arrival
	f.Insert(fakeReader, fakeATR)
	// Poll the array (no registration, so no signal can interleave).
	var rec pcsc.ReaderState
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.send(pcsc.CmdGetReadersState, nil, nil)
		arr := r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)
		if names(arr)[0] != fakeReader {
			t.Fatalf("names %q", names(arr)[:2])
		}
		binary.Decode(arr, le, &rec)
		if rec.State == 0x34 {
			break
		}
	}
	if rec.State != 0x34 || rec.EventCounter != 1 {
		t.Errorf("record without event counts from the host: %+v", rec)
	}
}

func TestHealth(t *testing.T) {
	f, src := startFake(t)
	if h := src.Health(t.Context()); len(h.Readers) != 2 || h.Readers[0] != fakeReader || h.Err != nil {
		t.Errorf("Health = %+v", h)
	}
	f.RemoveReader(fakeReader)
	time.Sleep(100 * time.Millisecond)
	if h := src.Health(t.Context()); len(h.Readers) != 1 || h.Readers[0] != fakeReader2 {
		t.Errorf("Health after removal = %+v", h)
	}
}

// With no readers, the first guest is served at once, not after a wait.
func TestNoReadersReady(t *testing.T) {
	f := scardtest.NewFake()
	src, err := nativepcsc.New(f, &nativepcsc.Config{MaxPoll: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	start := time.Now()
	r := dial(t, src)
	r.version(pcsc.V44)
	r.send(pcsc.CmdGetReadersState, nil, nil)
	if n := names(r.bytes(pcsc.DefaultSlots * pcsc.ReaderStateSize)); n[0] != "" {
		t.Errorf("names %q", n[:1])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("first guest served after %v", d)
	}
}

// Source is a host-side source as internal/hostpcsc defines it.
var _ interface {
	Dial(context.Context) (net.Conn, error)
	Probe(context.Context) (pcsc.Daemon, error)
	String() string
} = (*nativepcsc.Source)(nil)

// ServeOpened serves a connection whose opening message was read by the
// core: it answers that message first, then the rest of the connection.
func TestServeOpened(t *testing.T) {
	_, src := startFake(t)
	guest, daemon := net.Pipe()
	t.Cleanup(func() { guest.Close() })
	done := make(chan error, 1)
	go func() { done <- src.ServeOpened(t.Context(), daemon, pcsc.AppendVersionRequest(nil, pcsc.V45)) }()
	guest.SetDeadline(time.Now().Add(10 * time.Second))
	r := &raw{t, guest}
	var vs pcsc.VersionStruct
	r.recv(&vs)
	if vs.Major != 4 || vs.Minor != 5 || vs.RV != 0 {
		t.Fatalf("reply to the opening: %+v, want 4.5 accepted", vs)
	}
	if r.establish() == 0 {
		t.Fatal("no context after the opening")
	}
	guest.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeOpened: %v", err)
	}
}

// A connection ServeOpened cannot take (MaxConnections) is refused as a
// daemon that cannot serve it: its CMD_VERSION gets SCARD_E_NO_SERVICE.
func TestServeOpenedBusy(t *testing.T) {
	f := scardtest.NewFake(fakeReader)
	src, err := nativepcsc.New(f, &nativepcsc.Config{MaxConnections: 1, MinPoll: 5 * time.Millisecond, MaxPoll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dial(t, src).version(pcsc.V46) // takes the one slot
	guest, daemon := net.Pipe()
	defer guest.Close()
	guest.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan error, 1)
	go func() { done <- src.ServeOpened(t.Context(), daemon, pcsc.AppendVersionRequest(nil, pcsc.V46)) }()
	var vs pcsc.VersionStruct
	(&raw{t, guest}).recv(&vs)
	if vs.RV != pcsc.ReturnNoService {
		t.Errorf("reply %+v, want SCARD_E_NO_SERVICE", vs)
	}
	if err := <-done; !errors.Is(err, nativepcsc.ErrBusy) {
		t.Errorf("ServeOpened: %v, want ErrBusy", err)
	}
}
