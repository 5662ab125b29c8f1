package sshdial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"github.com/cardshare/cardshare/internal/rawio"
)

// defaultConnectTimeout applies when a Target has no ConnectTimeout.
const defaultConnectTimeout = 15 * time.Second

// DialOptions are the caller's choices for Dial; the zero value is usable.
type DialOptions struct {
	// AcceptNew accepts and records unknown host keys, as
	// StrictHostKeyChecking accept-new does. Changed keys are still refused.
	AcceptNew bool
	// Prompt asks for the passphrase of an encrypted identity file, e.g.
	// with x/term's ReadPassword. nil means there is no one to ask: such
	// keys are skipped unless the agent holds them.
	Prompt func(prompt string) ([]byte, error)
	// Logger receives host key and connection events; nil discards them.
	Logger *slog.Logger
}

// connectError means the TCP connection (or, through a jump host, the
// forwarded connection) could not be made, or the server did not start
// the SSH handshake in time.
type connectError struct {
	Addr string // host:port
	Via  string // jump host's host:port, "" for a direct connection
	Err  error
}

func (e *connectError) Error() string {
	if e.Via != "" {
		return fmt.Sprintf("connect to %s via %s: %v", e.Addr, e.Via, e.Err)
	}
	return fmt.Sprintf("connect to %s: %v", e.Addr, e.Err)
}

func (e *connectError) Unwrap() error { return e.Err }

// Timeout reports whether the connection attempt timed out.
func (e *connectError) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout() || errors.Is(e.Err, context.DeadlineExceeded)
}

// Dial connects to t, through t.Jumps if any, and authenticates. The
// returned client is ready for ListenUnix and NewSession; closing it also
// closes the jump host connections.
func Dial(ctx context.Context, t Target, opts DialOptions) (*ssh.Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(t.Jumps) != len(t.ProxyJump) {
		return nil, fmt.Errorf("%s: ProxyJump %v is not resolved, use Resolve", t.Alias, t.ProxyJump)
	}
	var chain []*ssh.Client
	closeChain := func() {
		for i := len(chain) - 1; i >= 0; i-- {
			chain[i].Close()
		}
	}
	var via *ssh.Client
	for i, hop := range t.Jumps {
		var c *ssh.Client
		var err error
		if i == 0 {
			c, err = Dial(ctx, hop, opts) // the first hop may have jumps of its own
		} else {
			c, err = dialOne(ctx, hop, opts, via)
		}
		if err != nil {
			closeChain()
			return nil, fmt.Errorf("jump host %s: %w", hop.Alias, err)
		}
		chain = append(chain, c)
		via = c
	}
	c, err := dialOne(ctx, t, opts, via)
	if err != nil {
		closeChain()
		return nil, err
	}
	if len(chain) > 0 {
		go func() {
			_ = c.Wait()
			closeChain()
		}()
	}
	return c, nil
}

// dialOne connects to t directly (via == nil) or through via.
func dialOne(ctx context.Context, t Target, opts DialOptions, via *ssh.Client) (*ssh.Client, error) {
	log := opts.Logger.With("host", t.Alias)
	addr := t.Addr()
	timeout := t.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	hk, err := newHostKeyChecker(t, opts.AcceptNew, log)
	if err != nil {
		return nil, err
	}
	auth := &authState{t: t, prompt: opts.Prompt, log: log}
	defer auth.close()

	connErr := func(err error) error {
		e := &connectError{Addr: addr, Err: err}
		if via != nil {
			e.Via = via.RemoteAddr().String()
		}
		return e
	}
	log.Debug("ssh connect", "addr", addr, "via", via != nil)
	dctx, cancel := context.WithTimeout(ctx, timeout)
	var conn net.Conn
	if via == nil {
		conn, err = new(net.Dialer).DialContext(dctx, "tcp", addr)
		if err == nil {
			conn = rawio.RawIO(conn)
		}
	} else {
		conn, err = via.DialContext(dctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		return nil, connErr(err)
	}

	// ConnectTimeout covers the server's banner and key exchange, as in
	// OpenSSH; it stops once the host key arrives, so that a passphrase
	// prompt during authentication is not cut short. ctx covers it all.
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		conn.Close()
	})
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cfg := &ssh.ClientConfig{
		User:              t.User,
		HostKeyAlgorithms: hk.algorithms(),
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			timer.Stop()
			return hk.check(host, remote, key)
		},
	}
	cfg.Ciphers = preferredCiphers()
	auth.config(cfg)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() && err == nil {
		sc.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		var hkErr *hostKeyError
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ssh %s: %w", addr, ctx.Err())
		case timedOut.Load():
			return nil, connErr(fmt.Errorf("no SSH handshake within %v: %w", timeout, os.ErrDeadlineExceeded))
		case errors.As(err, &hkErr):
			return nil, hkErr
		case auth.started && !isConnLost(err):
			return nil, auth.err(err)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
	if am, ok := sc.(ssh.AlgorithmsConnMetadata); ok {
		log.Debug("ssh connected", "addr", addr, "user", t.User, "cipher", am.Algorithms().Write.Cipher)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// isConnLost tells a dropped connection from a refusal by the server.
func isConnLost(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// preferredCiphers puts the AEAD ciphers first: AES-GCM when the CPU has
// AES and carry-less multiply instructions, else ChaCha20-Poly1305, which
// is faster than software AES. The server picks the first one it supports.
func preferredCiphers() []string {
	aead := []string{ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM}
	hwAES := cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	if !hwAES {
		aead = []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return append(aead, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR)
}
