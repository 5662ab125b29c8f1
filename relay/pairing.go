package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cardshare/cardshare/relay/trust"
)

// Pairing itself (tokens, the exchange, the host's record of guests) is
// package trust's; Join and JoinListening reach the host for it over relay
// mode's addresses.

// ErrGuestRefused means the host said that it does not accept this guest's
// key (trust.Hello.Refused): the guest was revoked, or never paired with
// this host.
var ErrGuestRefused = errors.New("relay: host refused this guest's key")

// errHostAlert is a TLS alert from the host, which says no why (its guest
// list unreadable, or an older host): the agent retries it, slowly.
var errHostAlert = errors.New("relay: host refused the connection with a TLS alert")

// JoinConfig tunes Join. A nil *JoinConfig means defaults.
type JoinConfig struct {
	// Timeout bounds the whole exchange. Zero means 30 s.
	Timeout time.Duration
	// Dial connects to the host; nil means DialAddr.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Join pairs this guest with the host at addr (as DialAddr parses it) using
// tok, and returns the credentials to connect with from then on. It makes the
// guest's key; the caller saves the credentials.
func Join(ctx context.Context, addr string, tok trust.Token, cfg *JoinConfig) (*trust.Credentials, error) {
	var c JoinConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Dial == nil {
		c.Dial = DialAddr
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()

	key, id, err := trust.NewGuestKey()
	if err != nil {
		return nil, err
	}
	raw, err := c.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	h, err := trust.Pair(ctx, raw, id, tok, addr, c.Timeout)
	if err != nil {
		return nil, err
	}
	return &trust.Credentials{Guest: h.Guest, Host: addr, HostKey: tok.HostKey, Key: key}, nil
}

// JoinListening pairs this guest with a host that connects to it instead:
// the host's `relay pair --dial` names this guest's address, and its
// `relay serve` connects there. JoinListening accepts connections on ln
// until one comes from the host that tok names and the pairing is done, or
// the host refuses it, or cfg.Timeout passes (zero means 10 min, a token's
// default lifetime). Connections from anyone else are closed after their
// handshake fails; they learn nothing. The caller sets Credentials.Listen.
func JoinListening(ctx context.Context, ln net.Listener, tok trust.Token, cfg *JoinConfig) (*trust.Credentials, error) {
	var c JoinConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	key, id, err := trust.NewGuestKey()
	if err != nil {
		return nil, err
	}
	var last error
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err := fmt.Errorf("relay: the host did not connect to %s within %v", ln.Addr(), c.Timeout)
				if last != nil {
					err = fmt.Errorf("%w; the last connection failed: %w", err, last)
				}
				return nil, err
			}
			return nil, fmt.Errorf("relay: accept: %w", err)
		}
		peer := raw.RemoteAddr().String()
		hctx, hcancel := context.WithTimeout(ctx, pairHandshakeTimeout)
		h, err := trust.Pair(hctx, raw, id, tok, peer, pairHandshakeTimeout)
		hcancel()
		if errors.Is(err, trust.ErrPairingRefused) {
			return nil, err
		}
		if err != nil {
			if ctx.Err() == nil {
				last = err // not the host: a scan, or a stale attempt
			}
			continue
		}
		return &trust.Credentials{Guest: h.Guest, HostKey: tok.HostKey, Key: key}, nil
	}
}

// pairHandshakeTimeout bounds one connection of JoinListening.
const pairHandshakeTimeout = 10 * time.Second
