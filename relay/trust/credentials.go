package trust

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cardshare/cardshare/internal/unixsock"
)

// Credentials are what a guest needs to connect to its host: where the host
// is, the host key it pinned, and its own key. Join returns them; Save keeps
// them in a file only the guest's user may read.
type Credentials struct {
	// Guest is the name the host gave the guest at pairing.
	Guest string
	// Host is the host's address, as relay.DialAddr parses it. Empty when the
	// host connects to the guest instead (Listen).
	Host string
	// Listen is where the agent waits for the host to connect, as
	// relay.ListenAddr parses it, for a guest that the host can reach but that
	// cannot reach the host. Empty when the guest connects to the host.
	Listen string
	// HostKey is the fingerprint of the host key, from the pairing token.
	HostKey Fingerprint
	// Key is the guest's own key, pinned by the host at pairing.
	Key ed25519.PrivateKey
}

// credentialsFile is the JSON form of Credentials.
type credentialsFile struct {
	Guest   string      `json:"guest"`
	Host    string      `json:"host,omitempty"`
	Listen  string      `json:"listen,omitempty"`
	HostKey Fingerprint `json:"host_key"`
	Key     string      `json:"key"` // PKCS #8 PEM
}

// Save writes c to path with mode 0600, creating its directory with mode
// 0700 when missing. It replaces an existing file at once, never partly.
func (c *Credentials) Save(path string) error {
	if err := unixsock.MkdirPrivate(filepath.Dir(path)); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	k, err := marshalKey(c.Key)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(credentialsFile{Guest: c.Guest, Host: c.Host, Listen: c.Listen, HostKey: c.HostKey, Key: string(k)}, "", "\t")
	if err != nil {
		return err
	}
	if err := unixsock.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("relay: save credentials: %w", err)
	}
	return nil
}

// ErrNoCredentials means the guest has not joined a host yet.
var ErrNoCredentials = errors.New("relay: no credentials: this guest has not joined a host")

// LoadCredentials reads what Save wrote. It refuses a file that other users
// may read.
func LoadCredentials(path string) (*Credentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNoCredentials, path)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: read credentials: %w", err)
	}
	if err := unixsock.CheckPrivateFile(path); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	var f credentialsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("relay: credentials %s: %w", path, err)
	}
	key, err := parseKey([]byte(f.Key))
	if err != nil {
		return nil, fmt.Errorf("relay: credentials %s: %w", path, err)
	}
	if (f.Host == "") == (f.Listen == "") {
		return nil, fmt.Errorf("relay: credentials %s must name either the host's address or where to listen for it", path)
	}
	return &Credentials{Guest: f.Guest, Host: f.Host, Listen: f.Listen, HostKey: f.HostKey, Key: key}, nil
}
