package proxy

import (
	"fmt"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// The guest's side of the WAIT registration (see Proxy.waiting).

// whileWaiting refuses what libpcsclite never sends while it is registered
// for the signal: a second WAIT, which pcscd would register twice
// (EHRegisterClientForEvent appends to a list, src/eventhandler.c:66-75 in
// pcsc-lite 2.5.1) so that one event sends two signals, and any request
// but the reader state calls and STOP_WAITING (SCardGetStatusChange holds
// the context's lock from its WAIT to its STOP_WAITING,
// src/winscard_clnt.c:1785-2231 in 2.4.1). What pcscd may answer while
// armed is then only what the stream scanner can tell from the signal.
func (p *Proxy) whileWaiting(cmd uint32) error {
	p.mu.Lock()
	waiting := p.waiting
	p.mu.Unlock()
	if !waiting {
		return nil
	}
	switch cmd {
	case pcsc.CmdStopWaiting, pcsc.CmdGetReadersState, pcsc.CmdGetReaderEvents, pcsc.CmdGetReadersStateSize, pcsc.CmdGetReadersStateArray:
		return nil
	}
	return fmt.Errorf("%w: client sent %s while waiting for reader events", pcsc.ErrProtocol, pcsc.CommandName(cmd))
}

// stopWaiting handles STOP_WAITING. While the guest waits, pcscd answers
// it with the registration's one signal, whether it acknowledges the STOP
// or an event or cancel came first; the answer comes before the reply to
// anything sent after it, so it is queued as a reply of its own
// (src/winscard_svc.c:467-487 and src/eventhandler.c:81-131 in pcsc-lite
// 2.5.1; the client reads exactly 8 bytes after it,
// src/winscard_clnt.c:3756-3785). Otherwise pcscd is not registered and
// answers nothing.
func (p *Proxy) stopWaiting(e *entry) error {
	p.mu.Lock()
	waiting := p.waiting
	p.waiting = false
	if waiting && p.qLen == 0 && !p.armed {
		waiting = false // the signal is already on its way to the guest
	}
	p.mu.Unlock()
	if !waiting {
		return nil
	}
	e.stop, e.reply = true, pcsc.Reply{Command: pcsc.CmdStopWaiting}
	return p.push(e, false)
}
