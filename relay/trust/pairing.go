package trust

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Pairing introduces a guest to the host once:
//
//  1. On the host, `relay pair NAME` makes a token: a random secret and the
//     fingerprint of the host key. The host keeps the secret's hash, the
//     name and an expiry time (HostState.Pair).
//  2. The user carries the token to the guest. `relay join` makes the
//     guest's key and connects with TLS, ALPN ProtoPair. The guest accepts
//     only a host whose key matches the token's fingerprint, so the secret
//     goes to no one else.
//  3. The guest sends the secret. If it matches a pending, unexpired
//     pairing, the host pins the key the guest proved in the handshake under
//     the pairing's name, drops the pairing and answers with a hello; on any
//     failure it closes the connection without a word.
//
// The guest then holds the host's fingerprint (from the token) and the host
// holds the guest's; from then on each end accepts only the other's key.

// SecretSize is the size of a pairing secret: 128 random bits, beyond
// guessing within a token's lifetime.
const SecretSize = 16

// tokenPrefix starts every pairing token and names its format.
const tokenPrefix = "cs1-"

// Token is a pairing token: a one-time secret and the fingerprint of the key
// of the host that issued it.
type Token struct {
	Secret  [SecretSize]byte
	HostKey Fingerprint
}

func newToken(host Fingerprint) (Token, error) {
	t := Token{HostKey: host}
	if _, err := rand.Read(t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("relay: pairing secret: %w", err)
	}
	return t, nil
}

// String encodes t as "cs1-" and the unpadded base64url of the secret and
// the fingerprint: 68 characters that survive copying through terminals,
// shells and chat windows.
func (t Token) String() string {
	b := make([]byte, 0, SecretSize+len(t.HostKey))
	b = append(append(b, t.Secret[:]...), t.HostKey[:]...)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadToken means a string is not a pairing token.
var ErrBadToken = errors.New("relay: not a pairing token")

// ParseToken decodes what Token.String returns. Surrounding white space is
// ignored.
func ParseToken(s string) (Token, error) {
	var t Token
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return t, fmt.Errorf("%w: it does not start with %q", ErrBadToken, tokenPrefix)
	}
	// The length check comes first: the decoder skips newlines.
	if len(b64) != base64.RawURLEncoding.EncodedLen(SecretSize+len(t.HostKey)) {
		return t, fmt.Errorf("%w: it is cut short or altered", ErrBadToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(b64)
	// The decoder skips newlines, so a token with some inside decodes
	// to fewer bytes: that is an altered token, not the same one.
	if err != nil || len(b) != SecretSize+len(t.HostKey) {
		return t, fmt.Errorf("%w: it is cut short or altered", ErrBadToken)
	}
	copy(t.Secret[:], b)
	copy(t.HostKey[:], b[SecretSize:])
	return t, nil
}

// Hello is the host's first message on a connection it accepted: a pairing
// it completed, or a session it is about to carry. It travels inside TLS,
// as a 4-byte big-endian length and that much JSON.
type Hello struct {
	// Guest is the name the host knows the guest by.
	Guest string `json:"guest"`
	// Protocol and Lenient describe the host pcscd as probed when the host
	// started (pcsc.Daemon), so the agent can compare its libpcsclite.
	// Zero when unknown.
	Protocol [2]uint32 `json:"protocol,omitzero"`
	Lenient  bool      `json:"lenient,omitempty"`
	// Refused, when set, is the host's explicit word that this guest's
	// key may not connect, and why ("revoked", "not paired"): the host
	// read its guest list and the key is not active in it. The host sends
	// nothing else and closes. An agent stops for good only on this;
	// a TLS alert (the host could not read its list, as while guests.json
	// is rewritten) is retried.
	Refused string `json:"refused,omitempty"`
}

// maxHello bounds a hello, so a broken peer cannot make the other allocate.
const maxHello = 4 << 10

// WriteHello sends h.
func WriteHello(w io.Writer, h Hello) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b))))
	if err == nil {
		_, err = w.Write(b)
	}
	return err
}

// ReadHello reads what WriteHello sent; it refuses one over maxHello bytes.
func ReadHello(r io.Reader) (Hello, error) {
	var h Hello
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return h, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxHello {
		return h, fmt.Errorf("relay: host hello of %d bytes is too long", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return h, noEOF(err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("relay: host hello: %w", err)
	}
	return h, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ErrPairingRefused means the host did not accept the pairing token: it is
// wrong, expired or used already. The host does not say which; its log does.
var ErrPairingRefused = errors.New("relay: host refused the pairing token")

// NewGuestKey makes the key a guest joins with, and its TLS identity.
func NewGuestKey() (ed25519.PrivateKey, *Identity, error) {
	key, err := generateKey()
	if err != nil {
		return nil, nil, err
	}
	id, err := NewIdentity(key)
	return key, id, err
}

// Pair is the guest's side of a pairing, over raw, a connection to or from
// the host at peer: a TLS handshake that accepts only the host key tok
// names, the secret, and the host's hello. It closes raw. ctx bounds it;
// timeout is only what the error says when ctx ends it.
func Pair(ctx context.Context, raw net.Conn, id *Identity, tok Token, peer string, timeout time.Duration) (Hello, error) {
	conn := tls.Client(raw, GuestTLSConfig(id, tok.HostKey, ProtoPair))
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	if err := conn.HandshakeContext(ctx); err != nil {
		return Hello{}, HandshakeError(peer, err)
	}
	if _, err := conn.Write(tok.Secret[:]); err != nil {
		return Hello{}, fmt.Errorf("relay: pair with %s: %w", peer, err)
	}
	h, err := ReadHello(conn)
	if err != nil {
		if ctx.Err() != nil {
			return Hello{}, fmt.Errorf("relay: pair with %s: no answer within %v", peer, timeout)
		}
		if IsRemoteAlert(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Hello{}, ErrPairingRefused
		}
		return Hello{}, fmt.Errorf("relay: pair with %s: %w", peer, err)
	}
	return h, nil
}

// HandshakeError words a failed TLS handshake with the host.
func HandshakeError(addr string, err error) error {
	if errors.Is(err, ErrHostKeyMismatch) {
		return err
	}
	return fmt.Errorf("relay: TLS handshake with %s: %w", addr, err)
}

// IsRemoteAlert reports a fatal TLS alert from the peer. crypto/tls reports
// those as a *net.OpError whose Op is "remote error"; the alert type itself is
// unexported.
func IsRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// aLongTimeAgo is a deadline in the past, to wake blocked reads.
var aLongTimeAgo = time.Unix(1, 0)
