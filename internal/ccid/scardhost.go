package ccid

import (
	"fmt"
	"time"

	"github.com/cardshare/cardshare/internal/scard"
)

// NewSCardHost adapts the host's PC/SC library (internal/scard: pcsc-lite,
// winscard.dll, PCSC.framework) to Host.
func NewSCardHost(lib scard.Library) Host { return scardHost{lib} }

type scardHost struct{ lib scard.Library }

func (h scardHost) EstablishContext() (HostContext, error) {
	c, err := h.lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		return nil, hostErr(err)
	}
	return &scardContext{lib: h.lib, ctx: c}, nil
}

type scardContext struct {
	lib scard.Library
	ctx scard.Context
}

func (c *scardContext) ListReaders() ([]string, error) {
	names, err := c.lib.ListReaders(c.ctx)
	if scard.CodeOf(err) == scard.NoReadersAvailable {
		return nil, nil
	}
	return names, hostErr(err)
}

func (c *scardContext) GetStatusChange(timeout time.Duration, states []ReaderState) error {
	rs := make([]scard.ReaderState, len(states))
	for i, s := range states {
		rs[i] = scard.ReaderState{Reader: s.Reader, CurrentState: s.CurrentState}
	}
	if err := c.lib.GetStatusChange(c.ctx, timeout, rs); err != nil {
		return hostErr(err) // the states are not filled in
	}
	for i := range states {
		states[i].EventState, states[i].ATR = rs[i].EventState, rs[i].ATR
	}
	return nil
}

func (c *scardContext) Cancel() error  { return hostErr(c.lib.Cancel(c.ctx)) }
func (c *scardContext) Release() error { return hostErr(c.lib.ReleaseContext(c.ctx)) }

func (c *scardContext) Connect(reader string, exclusive bool) (HostCard, error) {
	share := uint32(scard.ShareShared)
	if exclusive {
		share = scard.ShareExclusive
	}
	h, proto, err := c.lib.Connect(c.ctx, reader, share, scard.ProtocolT0|scard.ProtocolT1)
	if err != nil {
		return nil, hostErr(err)
	}
	return &scardCard{lib: c.lib, h: h, proto: proto, share: share}, nil
}

type scardCard struct {
	lib   scard.Library
	h     scard.Card
	proto uint32
	share uint32
}

func (c *scardCard) Transmit(apdu, recv []byte) (int, error) {
	n, _, err := c.lib.Transmit(c.h, scard.IORequest{Protocol: c.proto}, apdu, recv)
	return n, hostErr(err)
}

func (c *scardCard) BeginTransaction() error { return hostErr(c.lib.BeginTransaction(c.h)) }
func (c *scardCard) EndTransaction() error {
	return hostErr(c.lib.EndTransaction(c.h, scard.DispositionLeave))
}
func (c *scardCard) Disconnect() error { return hostErr(c.lib.Disconnect(c.h, scard.DispositionLeave)) }

func (c *scardCard) Reconnect() error {
	p, err := c.lib.Reconnect(c.h, c.share, scard.ProtocolT0|scard.ProtocolT1, scard.DispositionLeave)
	if err == nil {
		c.proto = p
	}
	return hostErr(err)
}

// hostErr gives a PC/SC code the sentinel the bridge branches on, keeping
// the code in the chain.
func hostErr(err error) error {
	if err == nil {
		return nil
	}
	var s error
	switch scard.CodeOf(err) {
	case scard.ResetCard:
		s = ErrResetCard
	case scard.RemovedCard, scard.NoSmartcard:
		s = ErrRemovedCard
	case scard.Timeout:
		s = ErrTimeout
	case scard.Cancelled:
		s = ErrCancelled
	case scard.SharingViolation:
		s = ErrSharingViolation
	case scard.ReaderUnavailable, scard.UnknownReader:
		s = ErrReaderUnavailable
	case scard.NoService, scard.ServiceStopped:
		s = ErrNoService
	default:
		return err
	}
	return fmt.Errorf("%w (%w)", s, err)
}
