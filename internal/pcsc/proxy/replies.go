package proxy

import (
	"fmt"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// The host-to-guest direction of Proxy: framing the daemon's stream
// against the queue of requests in flight and the WAIT registration.

// head returns the entry whose reply comes next, and whether the signal
// may come. On its way it finishes the entries that wait for no host
// bytes: it arms the registration of a WAIT that reaches the head, and
// sends the answers the proxy made.
func (p *Proxy) head() (*entry, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.qLen > 0 {
		e := &p.q[p.qHead]
		if e.arms {
			// pcscd has answered everything before the WAIT: it
			// registers the connection now (before a 2.5.x dump).
			p.armed, p.armGen, e.arms = true, e.gen, false
		}
		switch {
		case e.noReply, e.stop && !p.armed:
			// A STOP after the signal came: pcscd answers nothing.
			p.pop()
			continue
		case e.localN > 0:
			if err := p.toGuest(e.local[:e.localN]); err != nil {
				return nil, false, err
			}
			p.audit(&p.repCall, e, true)
			p.pop()
			continue
		}
		if e.sized {
			e.reply.Records, e.out, e.sized = p.lastSize, p.lastSize, false
		}
		if p.armed {
			e.racy = true
		}
		return e, p.armed, nil
	}
	return nil, p.armed, nil
}

// Replies relays the host's replies to the guest until the host ends its
// stream (nil) or an error. An ErrProtocol means the host sent what no
// request asked for, and the connection must close.
func (p *Proxy) Replies() error {
	bp := proxyBufs.Get().(*[proxyBufSize]byte)
	defer proxyBufs.Put(bp)
	buf := bp[:]
	r, w, out := 0, 0, 0
	var rerr error
	for {
		for {
			e, armed, err := p.head()
			if err != nil {
				return err
			}
			var want *pcsc.Reply
			if e != nil {
				want = &e.reply
			}
			u, err := p.reps.Next(buf[r:w], want, armed)
			if err != nil || u.Len == 0 {
				if ferr := p.toGuest(buf[out:r]); ferr != nil {
					return ferr
				}
				out = r
				if err != nil {
					return err
				}
				break
			}
			unit := buf[r : r+u.Len]
			if u.Kind == pcsc.KindSignal && (e == nil || !e.stop) {
				if err := p.toGuest(buf[out:r]); err != nil {
					return err
				}
				if err := p.signal(unit); err != nil {
					return err
				}
				r += u.Len
				out = r
				continue
			}
			keep, err := p.replyUnit(e, u, unit)
			if err != nil {
				return err
			}
			if keep {
				e.repBytes += u.Len
			} else {
				if err := p.toGuest(buf[out:r]); err != nil {
					return err
				}
				out = r + u.Len
			}
			r += u.Len
			if u.Last {
				if err := p.toGuest(buf[out:r]); err != nil {
					return err
				}
				out = r
				if err := p.complete(e); err != nil {
					return err
				}
			}
		}
		r, w, out = compact(buf, r, w)
		if rerr != nil {
			return endOf(rerr)
		}
		var nr int
		nr, rerr = p.host.Read(buf[w:])
		w += nr
	}
}

// signal passes on the registration's signal, which came while no STOP
// was waiting for it.
func (p *Proxy) signal(unit []byte) error {
	p.mu.Lock()
	p.disarm()
	err := p.toGuest(unit)
	p.mu.Unlock()
	if p.onCall != nil {
		p.repCall = Call{Command: pcsc.CmdWaitReaderStateChange, RV: le.Uint32(unit[4:]), HasRV: true, ReplyBytes: len(unit), Event: true}
		p.onCall(&p.repCall)
	}
	return err
}

// disarm ends the registration once its signal came; p.mu is held. The
// guest stops waiting when the signal is its current registration's.
func (p *Proxy) disarm() {
	p.armed = false
	if p.waiting && p.gen == p.armGen {
		p.waiting = false
	}
}

// replyUnit handles one unit of the reply to e, and reports whether it
// goes to the guest; unit may be rewritten in place.
func (p *Proxy) replyUnit(e *entry, u pcsc.Unit, unit []byte) (bool, error) {
	switch u.Kind {
	case pcsc.KindReply:
		rv := le.Uint32(unit[len(unit)-4:])
		e.rv, e.hasRV = rv, true
		if rv == pcsc.ReturnSuccess {
			p.track(u.Command, unit)
		}
	case pcsc.KindSignal: // the answer to STOP_WAITING
		e.rv, e.hasRV = le.Uint32(unit[4:]), true
		p.mu.Lock()
		p.disarm()
		p.mu.Unlock()
	case pcsc.KindArraySize:
		p.lastSize = int(le.Uint32(unit))
	case pcsc.KindRecord:
		return p.record(e, u, unit)
	}
	return !e.swallow, nil
}

// track notes the handles a successful reply issues or ends.
func (p *Proxy) track(cmd uint32, rep []byte) {
	switch cmd {
	case pcsc.CmdEstablishContext:
		// pcscd keeps one context per connection: a second
		// ESTABLISH_CONTEXT replaces the first, which can then be
		// neither released nor cancelled (MSGAddContext and
		// MSGRemoveContext, src/winscard_svc.c:953-971 in pcsc-lite
		// 2.5.1; the lookup of SCARD_CANCEL, 673-707). So does the
		// proxy: what it remembers of a connection is bounded by one.
		h := le.Uint32(rep[pcsc.OffEstablishContext:])
		if p.context != 0 {
			p.g.dropContext(p.context)
		}
		p.context = h
		p.g.addContext(h)
	case pcsc.CmdReleaseContext:
		if h := le.Uint32(rep[pcsc.OffReleaseContext:]); h == p.context && h != 0 {
			p.g.dropContext(h)
			p.context = 0
		}
	case pcsc.CmdConnect:
		if p.onCall != nil {
			name := string(pcsc.CString(rep[pcsc.OffConnectReader : pcsc.OffConnectReader+pcsc.MaxReaderName-1]))
			p.mu.Lock()
			p.cards = append(p.cards, card{le.Uint32(rep[pcsc.OffConnectCard:]), name})
			p.mu.Unlock()
		}
	case pcsc.CmdDisconnect:
		if p.onCall != nil {
			h := le.Uint32(rep[pcsc.OffCardHandle:])
			p.mu.Lock()
			for i, c := range p.cards {
				if c.h == h {
					p.cards = append(p.cards[:i], p.cards[i+1:]...)
					break
				}
			}
			p.mu.Unlock()
		}
	}
}

// record filters one reader record of an array reply. With a policy that
// hides readers, what the guest gets is built from records that parse
// (ValidRecord) and that the policy allows; anything else, a hidden
// reader, an unused slot or bytes that do not parse, becomes an all-zero
// unused slot, so that the array keeps its size (the client counts the
// readers by readerName[0], src/winscard_clnt.c:2974 in 2.5.1). Bytes that
// do not parse while the signal could have come are a lost framing: the
// connection closes.
func (p *Proxy) record(e *entry, u pcsc.Unit, rec []byte) (bool, error) {
	fwd, err := p.filterRecord(e, u, rec)
	if err == nil && u.Index == e.reply.Records-1 {
		// Count a change of the visible set before the last record goes
		// out: the guest may ask CMD_GET_READER_EVENTS as soon as it has
		// the array, and the proxy answers that when the request arrives.
		p.g.observe(p.set)
		p.set = 0
	}
	return fwd, err
}

func (p *Proxy) filterRecord(e *entry, u pcsc.Unit, rec []byte) (bool, error) {
	name := pcsc.ReaderName(rec)
	if p.g.policy.Filters() {
		var ok bool
		if name, ok = pcsc.ValidRecord(rec); !ok {
			if e.racy {
				return false, fmt.Errorf("%w: server sent a malformed reader record (%s, record %d) while an event signal could come", pcsc.ErrProtocol, pcsc.CommandName(e.guestCmd), u.Index)
			}
			p.malformed(e, u)
		}
		if len(name) == 0 || !p.g.allows(name) {
			clear(rec)
			name = nil
		} else {
			pcsc.CleanRecord(rec)
		}
	}
	if !e.swallow && u.Index >= e.out {
		if len(name) > 0 && p.g.allows(name) && p.g.firstCut(name) {
			p.notice(e.guestCmd, string(name), 0, fmt.Sprintf(
				"the reader is in slot %d of the host's %d-record array, and the guest's libpcsclite reads %d: the guest cannot see it",
				u.Index+1, e.reply.Records, e.out))
		}
		return false, nil
	}
	if len(name) > 0 {
		if p.g.allows(name) {
			p.set ^= nameHash(name)
		} else {
			clear(rec)
		}
	}
	return !e.swallow, nil
}

// malformed reports a record that does not parse, once per connection.
func (p *Proxy) malformed(e *entry, u pcsc.Unit) {
	if p.badRecord {
		return
	}
	p.badRecord = true
	p.notice(e.guestCmd, "", 0, fmt.Sprintf("record %d of the host's reader array does not parse: the guest gets an unused slot", u.Index))
}

// complete finishes the reply to the head of the queue: it pads a short
// array, logs the call and pops it (head then sends the answers the proxy
// made for requests that came after it).
func (p *Proxy) complete(e *entry) error {
	if e.reply.Records > 0 {
		if !e.swallow {
			for range e.out - e.reply.Records {
				if err := p.toGuest(zeroRecord[:]); err != nil {
					return err
				}
				e.repBytes += pcsc.ReaderStateSize
			}
		}
	}
	p.audit(&p.repCall, e, false)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pop()
	return nil
}

func (p *Proxy) pop() {
	p.q[p.qHead] = entry{}
	p.qHead = (p.qHead + 1) % queueLen
	p.qLen--
}
