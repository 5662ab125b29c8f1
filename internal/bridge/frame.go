package bridge

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Whole-message forwarding for the byte relay. A pcsc-lite client writes a
// request in up to three pieces (header, struct, the APDU of a TRANSMIT:
// MessageSendWithHeader and MessageSend, src/winscard_msg.c in pcsc-lite)
// and pcscd writes a reply in two (struct, then data) or one per reader
// record (2.5.x). Copied read by read, each piece would cost an SSH packet
// or a yamux frame of its own, and a wake-up of every process after it.
// framedPipe still copies the bytes unchanged, but it frames them as it goes
// (pcsc.RequestScanner, pcsc.ReplyScanner) and holds the start of a message
// back until the message is whole, so that one message leaves in one write.
//
// It only ever waits for bytes that are known to be coming: the rest of a
// request whose header or struct announced it (pcscd reads requests with
// the same rule, so it would wait for them too), or the rest of a reply to
// a request in flight, while no reader event registration could put a
// signal in its way. A signal, and anything that arrives whole, goes out at
// once. As a guard against a tracking mistake, a reply is held at most
// holdLimit; a connection whose framing fails, or whose holds time out
// repeatedly, is copied as it comes from then on.

// holdLimit bounds how long part of a reply waits for its rest. pcscd writes
// the two parts back to back, so the rest normally follows within
// microseconds; and the client needs the whole reply anyway, so a hold that
// ends when the rest comes costs the round trip nothing. Only a tracking
// mistake could make a hold wait for bytes that do not come: the limit is
// what that costs.
const holdLimit = 10 * time.Millisecond

// maxHoldMisses is how many holds may time out, with no reply completed
// in time between them, before a connection's replies are copied without
// framing. A loaded machine may delay pcscd's second write past holdLimit
// now and then; a tracking mistake makes every hold time out.
const maxHoldMisses = 3

// queueLen bounds the requests in flight that the tracker follows. A
// pcsc-lite client waits for each reply; only STOP_WAITING follows a WAIT
// without waiting for it.
const queueLen = 8

// keepFixed is the room a buffer keeps after its unread bytes for a whole
// fixed unit (the largest is a request's header and struct, 288 bytes, or
// a reader record, 184).
const keepFixed = 512

// framed says how a piped connection may be framed: its protocol version,
// and the number of records in the daemon's reader arrays, 0 if unknown.
type framed struct {
	version pcsc.Version
	slots   int
	hold    time.Duration // zero means holdLimit
}

// entry is a request in flight whose reply the tracker waits for.
type entry struct {
	reply   pcsc.Reply
	arms    bool   // a WAIT: pcscd registers the connection when it gets here
	noReply bool   // a WAIT of 4.6, answered by nothing but the signal
	stop    bool   // a STOP_WAITING sent while registered: one signal answers it
	sized   bool   // reply.Records is the last CMD_GET_READERS_STATE_SIZE answer
	gen     uint32 // the registration a WAIT makes
}

// tracker follows a connection's requests in flight, so that its replies
// can be framed. The same model as pcsc.Proxy's, for a connection whose two
// ends speak the same dialect.
type tracker struct {
	f framed

	mu       sync.Mutex
	q        [queueLen]entry
	qHead    int
	qLen     int
	lastSize int
	waiting  bool // the client sent a WAIT and no STOP_WAITING or signal since
	gen      uint32
	armed    bool // pcscd registered the connection and has not signalled
	armGen   uint32
	lost     bool // framing gave up: replies are copied as they come
}

// framedPipe is Pipe with whole-message forwarding, for a connection past
// its CMD_VERSION exchange that speaks f.version at both ends.
func framedPipe(ctx context.Context, guest, host net.Conn, counts *Counts, f framed) error {
	t := &tracker{f: f}
	return t.pipe(ctx, guest, host, counts)
}

func (t *tracker) pipe(ctx context.Context, guest, host net.Conn, counts *Counts) error {
	return pipe(ctx, guest, host,
		func() error { return t.requests(host, guest, &counts.Up) },
		func() error { return t.replies(guest, host, &counts.Down) })
}

// lose gives up framing replies.
func (t *tracker) lose() {
	t.mu.Lock()
	t.lost = true
	t.mu.Unlock()
}

// push notes a request that has been framed and is about to go to pcscd,
// before it goes, so that its reply always finds it. A request it cannot
// follow makes it give up framing replies.
func (t *tracker) push(cmd uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost {
		return
	}
	e := entry{reply: pcsc.Reply{Command: cmd}}
	switch cmd {
	case pcsc.CmdGetReadersState, pcsc.CmdWaitReaderStateChange:
		if t.f.slots <= 0 && !(cmd == pcsc.CmdWaitReaderStateChange && t.f.version.Minor >= 6) {
			// An array of unknown size.
			t.lost = true
			return
		}
		e.reply, _ = pcsc.ReplyTo(cmd, t.f.version, t.f.slots, 0)
		if cmd == pcsc.CmdWaitReaderStateChange {
			t.waiting = true
			t.gen++
			e.arms, e.gen = true, t.gen
			if t.f.version.Minor >= 6 {
				e.noReply = true
				if t.qLen == 0 {
					// Nothing before it: pcscd registers the
					// connection as soon as it reads it.
					t.armed, t.armGen = true, e.gen
					return
				}
			}
		}
	case pcsc.CmdGetReadersStateArray:
		e.sized = true
	case pcsc.CmdStopWaiting:
		// pcscd answers it with the registration's signal, if there
		// still is one (see pcsc.Proxy's stopWaiting).
		waiting := t.waiting
		t.waiting = false
		if !waiting || t.qLen == 0 && !t.armed {
			return
		}
		e.stop, e.reply = true, pcsc.Reply{Command: pcsc.CmdStopWaiting}
	}
	if t.qLen == queueLen {
		t.lost = true
		return
	}
	t.q[(t.qHead+t.qLen)%queueLen] = e
	t.qLen++
}

// head returns the reply that comes next (false: none is in flight),
// whether a signal may come, and whether framing gave up. It finishes the
// entries that wait for no bytes on its way.
func (t *tracker) head() (r pcsc.Reply, ok, armed, lost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.qLen > 0 {
		e := &t.q[t.qHead]
		if e.arms {
			t.armed, t.armGen, e.arms = true, e.gen, false
		}
		if e.noReply || e.stop && !t.armed {
			t.pop()
			continue
		}
		if e.sized {
			e.reply.Records, e.sized = t.lastSize, false
		}
		return e.reply, true, t.armed, t.lost
	}
	return pcsc.Reply{}, false, t.armed, t.lost
}

// done notes a unit of the reply stream that the scanner framed.
func (t *tracker) done(u pcsc.Unit, unit []byte, head bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case u.Kind == pcsc.KindSignal:
		t.armed = false
		if t.waiting && t.gen == t.armGen {
			t.waiting = false
		}
		if head && t.q[t.qHead].stop {
			t.pop()
		}
		return
	case u.Kind == pcsc.KindArraySize:
		t.lastSize = int(le32(unit))
	}
	if u.Last && head {
		t.pop()
	}
}

func (t *tracker) pop() {
	t.q[t.qHead] = entry{}
	t.qHead = (t.qHead + 1) % queueLen
	t.qLen--
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// frameBuf is a direction's buffer: bytes [out, w) are not sent yet, and
// bytes [r, w) not framed yet; either may run ahead of the other.
type frameBuf struct {
	small *[smallBufSize]byte
	big   *[bigBufSize]byte
	buf   []byte
	r, w  int
	out   int
}

func newFrameBuf() *frameBuf {
	b := &frameBuf{small: smallBufs.Get().(*[smallBufSize]byte)}
	b.buf = b.small[:]
	return b
}

func (b *frameBuf) release() {
	smallBufs.Put(b.small)
	if b.big != nil {
		bigBufs.Put(b.big)
	}
}

// send writes the bytes not sent yet.
func (b *frameBuf) send(dst net.Conn, n *atomic.Uint64) error {
	if b.out >= b.w {
		return nil
	}
	nw, err := dst.Write(b.buf[b.out:b.w])
	n.Add(uint64(nw))
	b.out = b.w
	return err
}

// settle makes room for the next read once everything is sent: it moves
// a partial fixed unit to the front, and takes the large buffer while
// reads fill the small one and hands it back when they do not.
func (b *frameBuf) settle(filled bool) {
	if b.r == b.w {
		b.r, b.w, b.out = 0, 0, 0
	}
	switch {
	case b.big == nil && filled:
		b.big = bigBufs.Get().(*[bigBufSize]byte)
		b.move(b.big[:])
	case b.big != nil && !filled && b.r == b.w:
		bigBufs.Put(b.big)
		b.big = nil
		b.buf = b.small[:]
	case len(b.buf)-b.w < keepFixed:
		b.move(b.buf)
	}
}

// move copies the unframed bytes to the front of to, which becomes the
// buffer.
func (b *frameBuf) move(to []byte) {
	n := copy(to, b.buf[b.r:b.w])
	b.out -= b.r
	b.r, b.w, b.buf = 0, n, to
}

// requests copies the client's stream to pcscd, one whole request (or
// several) per write.
func (t *tracker) requests(dst, src net.Conn, n *atomic.Uint64) error {
	b := newFrameBuf()
	defer b.release()
	s := pcsc.RequestScanner{Version: t.f.version}
	inMsg := false // the last unit framed left its request unfinished
	for {
		nr, rerr := src.Read(b.buf[b.w:])
		b.w += nr
		hold := false
		for b.r < b.w {
			u, err := s.Next(b.buf[b.r:b.w])
			if err != nil {
				// pcscd will close the connection: copy as it
				// comes.
				t.lose()
				if err := b.send(dst, n); err != nil {
					return err
				}
				if rerr != nil {
					return endOf(rerr)
				}
				return copyBytes(dst, src, n)
			}
			if u.Len == 0 {
				// A header announces its struct, and the struct
				// its data. A part of a header announces nothing
				// (libpcsclite writes it whole): it goes on.
				hold = inMsg || b.w-b.r >= pcsc.HeaderSize
				break
			}
			if u.Kind == pcsc.KindRequest {
				t.push(u.Command)
			}
			b.r += u.Len
			inMsg = !u.Last
			hold = inMsg
		}
		filled := b.w == len(b.buf)
		if !hold || filled || rerr != nil {
			if err := b.send(dst, n); err != nil {
				return err
			}
			b.settle(filled && nr > 0)
		}
		if rerr != nil {
			return endOf(rerr)
		}
	}
}

// replies copies pcscd's stream to the client, one whole reply (or
// several) per write.
func (t *tracker) replies(dst, src net.Conn, n *atomic.Uint64) error {
	b := newFrameBuf()
	defer b.release()
	var s pcsc.ReplyScanner
	limit := t.f.hold
	if limit <= 0 {
		limit = holdLimit
	}
	held, misses := false, 0
	inReply := false // the last unit framed left its reply unfinished
	missed := false  // a hold of the current reply timed out
	for {
		nr, rerr := src.Read(b.buf[b.w:])
		b.w += nr
		expired := false
		if held && errors.Is(rerr, os.ErrDeadlineExceeded) {
			// The rest did not come in time: send what is there.
			rerr, expired, missed = nil, true, true
			misses++
		}
		hold := false
		for {
			want, ok, armed, lost := t.head()
			if lost || misses >= maxHoldMisses {
				t.lose()
				return t.plainReplies(dst, src, n, b, held, rerr)
			}
			var wp *pcsc.Reply
			if ok {
				wp = &want
			}
			u, err := s.Next(b.buf[b.r:b.w], wp, armed)
			if err != nil {
				t.lose()
				return t.plainReplies(dst, src, n, b, held, rerr)
			}
			if u.Len == 0 {
				// The reply to a request in flight is not whole:
				// the rest is on its way, unless a signal could be.
				hold = ok && !armed && (b.r < b.w || inReply)
				break
			}
			if u.Kind != pcsc.KindSignal {
				inReply = !u.Last
				if u.Last {
					if !missed {
						misses = 0
					}
					missed = false
				}
			}
			t.done(u, b.buf[b.r:b.r+u.Len], ok)
			b.r += u.Len
		}
		filled := b.w == len(b.buf)
		if !hold || expired || filled || rerr != nil {
			if err := b.send(dst, n); err != nil {
				return err
			}
			b.settle(filled && nr > 0)
			hold = false
		}
		if hold != held {
			// Bound the wait for the rest; a connection that cannot
			// have deadlines is not held.
			var dl time.Time
			if hold {
				dl = time.Now().Add(limit)
			}
			if err := src.SetReadDeadline(dl); err != nil && hold {
				if err := b.send(dst, n); err != nil {
					return err
				}
				t.lose()
				return t.plainReplies(dst, src, n, b, true, rerr)
			}
			held = hold
		}
		if rerr != nil {
			return endOf(rerr)
		}
	}
}

// plainReplies sends what b holds and copies the rest of the stream as it
// comes.
func (t *tracker) plainReplies(dst, src net.Conn, n *atomic.Uint64, b *frameBuf, held bool, rerr error) error {
	if held {
		src.SetReadDeadline(time.Time{})
	}
	if err := b.send(dst, n); err != nil {
		return err
	}
	if rerr != nil {
		return endOf(rerr)
	}
	return copyBytes(dst, src, n)
}

// endOf is the result of a direction whose source failed with err: nil for
// the end of the stream.
func endOf(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}
