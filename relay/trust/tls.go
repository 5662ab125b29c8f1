package trust

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Both ends of a relay connection authenticate with TLS 1.3 and a key pinned
// at pairing: the host keeps the SHA-256 fingerprint of each guest's public
// key, the guest keeps the host's. Certificates are only the envelope TLS
// needs for a key; nothing checks their names, dates or issuers, and there is
// no CA.

// ALPN protocol names: what a TLS connection to the host is for.
const (
	ProtoRelay = "cardshare-relay/1" // a paired guest's session
	ProtoPair  = "cardshare-pair/1"  // a guest joining with a pairing token
)

// Fingerprint is the SHA-256 hash of a public key's DER-encoded
// SubjectPublicKeyInfo, the value each end pins.
type Fingerprint [sha256.Size]byte

// FingerprintOf returns the fingerprint of pub.
func FingerprintOf(pub crypto.PublicKey) (Fingerprint, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("relay: fingerprint: %w", err)
	}
	return sha256.Sum256(der), nil
}

// String formats f as OpenSSH prints key fingerprints: "SHA256:" and
// unpadded base64.
func (f Fingerprint) String() string {
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(f[:])
}

// ParseFingerprint parses what String returns.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	b64, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return f, fmt.Errorf("relay: fingerprint %q lacks the prefix SHA256", s)
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("relay: fingerprint %q is not 32 bytes of unpadded base64", s)
	}
	copy(f[:], b)
	return f, nil
}

func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

func (f *Fingerprint) UnmarshalText(b []byte) error {
	g, err := ParseFingerprint(string(b))
	*f = g
	return err
}

// Equal compares f and g in constant time.
func (f Fingerprint) Equal(g Fingerprint) bool { return subtle.ConstantTimeCompare(f[:], g[:]) == 1 }

// Identity is one end's long-lived key, in the self-signed certificate TLS
// presents it in.
type Identity struct {
	key  ed25519.PrivateKey
	fp   Fingerprint
	cert tls.Certificate
}

// NewIdentity wraps key in a self-signed certificate for TLS.
func NewIdentity(key ed25519.PrivateKey) (*Identity, error) {
	pub := key.Public()
	fp, err := FingerprintOf(pub)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "cardshare"},
		// Peers pin the key and ignore the dates; a wide window keeps
		// clock skew between host and guest harmless.
		NotBefore: time.Now().Add(-24 * time.Hour),
		NotAfter:  time.Now().Add(100 * 365 * 24 * time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{
			x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth,
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("relay: create certificate: %w", err)
	}
	return &Identity{key: key, fp: fp, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}, nil
}

// Fingerprint is the fingerprint of id's key, which the peer pins.
func (id *Identity) Fingerprint() Fingerprint { return id.fp }

// generateKey returns a new Ed25519 key: small, fast, and with no parameters
// to get wrong.
func generateKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("relay: generate key: %w", err)
	}
	return key, nil
}

const pemPrivateKey = "PRIVATE KEY"

func marshalKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

func parseKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != pemPrivateKey {
		return nil, errors.New("no PEM-encoded private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, not Ed25519", k)
	}
	return key, nil
}

// PeerFingerprint returns the fingerprint of the key the peer proved it
// holds in the handshake.
func PeerFingerprint(cs tls.ConnectionState) (Fingerprint, error) {
	if len(cs.PeerCertificates) == 0 {
		return Fingerprint{}, errors.New("relay: peer sent no certificate")
	}
	return FingerprintOf(cs.PeerCertificates[0].PublicKey)
}

// baseTLSConfig is what both ends share: TLS 1.3 only, and no session
// tickets, so that every connection proves its key again.
func baseTLSConfig(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{id.cert},
		SessionTicketsDisabled: true,
	}
}

// HostTLSConfig requires a client key and lets verify decide, for each
// connection, whether that key may do what the negotiated ALPN protocol
// asks. verify runs before the client has proved it holds the key, so it
// must not change anything; TLS fails the handshake after it if the proof
// fails.
func HostTLSConfig(id *Identity, verify func(proto string, guest Fingerprint) error) *tls.Config {
	c := baseTLSConfig(id)
	c.ClientAuth = tls.RequireAnyClientCert
	c.NextProtos = []string{ProtoRelay, ProtoPair}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		fp, err := PeerFingerprint(cs)
		if err != nil {
			return err
		}
		return verify(cs.NegotiatedProtocol, fp)
	}
	return c
}

// ErrHostKeyMismatch means the host's key is not the one the guest pinned
// (or that the pairing token names): the guest is talking to another
// machine, or the host's state was replaced.
var ErrHostKeyMismatch = errors.New("relay: host key does not match the pinned key")

// GuestTLSConfig presents the guest's key and accepts only a host with the
// pinned key.
func GuestTLSConfig(id *Identity, host Fingerprint, proto string) *tls.Config {
	c := baseTLSConfig(id)
	c.NextProtos = []string{proto}
	// The pin below replaces the chain and name checks, which need a CA.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		fp, err := PeerFingerprint(cs)
		if err != nil {
			return err
		}
		if !fp.Equal(host) {
			return fmt.Errorf("%w: host presented %s, expected %s", ErrHostKeyMismatch, fp, host)
		}
		if cs.NegotiatedProtocol != proto {
			return fmt.Errorf("relay: host does not speak %s", proto)
		}
		return nil
	}
	return c
}
