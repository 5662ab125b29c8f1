package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// Files in the host's state directory.
const (
	hostKeyFile = "host.key"    // the host's Ed25519 key, PKCS #8 PEM, 0600
	guestsFile  = "guests.json" // paired guests and pending pairings
	lockFile    = "lock"        // flock'ed while guests.json is rewritten
)

// HostState is the host's side of relay mode, kept in a directory that only
// its owner may enter: the host key, the guests paired with it, and the
// pairings not yet used. `relay pair` and `relay revoke` change it while
// `relay serve` runs; the serving Host re-reads the guest list when the file
// changes.
//
// Every change is a read-modify-write of guests.json under an exclusive lock,
// written to a new file and renamed into place, so readers never see half a
// file and concurrent commands never lose each other's changes.
type HostState struct {
	dir string
	id  *Identity
}

// GuestRecord is a paired guest.
type GuestRecord struct {
	// Name is what the host calls the guest; it labels logs and counters.
	Name string `json:"name"`
	// Key is the fingerprint of the guest's key, pinned when it joined.
	Key Fingerprint `json:"key"`
	// Paired is when the guest joined.
	Paired time.Time `json:"paired"`
	// Revoked is when `relay revoke` cut the guest off; zero while it may
	// connect. A revoked guest keeps its record so that the host keeps
	// refusing its key, and `relay list` shows what happened.
	Revoked time.Time `json:"revoked,omitzero"`
	// Dial is where the host connects to the guest's agent, as DialAddr
	// parses it, for a guest that the host can reach but that cannot reach
	// the host. Empty when the guest connects to the host.
	Dial string `json:"dial,omitempty"`
	// Readers and DenyControl are the guest's reader policy, as in
	// pcsc.Policy: the reader name patterns it may see and use (empty:
	// all), and whether SCardControl is refused.
	Readers     []string `json:"readers,omitempty"`
	DenyControl bool     `json:"deny_control,omitempty"`
}

// Active reports whether the guest may connect.
func (g GuestRecord) Active() bool { return g.Revoked.IsZero() }

// Policy returns the guest's reader policy, nil when it may use everything.
func (g GuestRecord) Policy() *pcsc.Policy {
	if len(g.Readers) == 0 && !g.DenyControl {
		return nil
	}
	return &pcsc.Policy{Readers: slices.Clone(g.Readers), DenyControl: g.DenyControl}
}

// SamePolicy reports whether g and o have the same reader policy.
func (g GuestRecord) SamePolicy(o GuestRecord) bool {
	return slices.Equal(g.Readers, o.Readers) && g.DenyControl == o.DenyControl
}

// setPolicy stores p in g; nil allows everything.
func (g *GuestRecord) setPolicy(p *pcsc.Policy) {
	g.Readers, g.DenyControl = nil, false
	if p != nil {
		g.Readers, g.DenyControl = slices.Clone(p.Readers), p.DenyControl
	}
}

// PairOptions are what a pairing settles besides the guest's name.
type PairOptions struct {
	// Dial is where the host connects to the guest's agent (HOST:PORT or
	// vsock://CID:PORT), for a guest that the host can reach but that
	// cannot reach the host; empty when the guest connects to the host.
	Dial string
	// Policy limits what the guest sees of the host's readers; nil lets
	// it use every reader. SetPolicy changes it later.
	Policy *pcsc.Policy
}

// PendingPairing is a pairing token not yet used. Only the SHA-256 hash of
// its secret is kept (in Fingerprint's text form), so the state file alone
// cannot be turned into a token.
type PendingPairing struct {
	Name    string      `json:"name"`
	Secret  Fingerprint `json:"secret"`
	Expires time.Time   `json:"expires"`
	// The GuestRecord to be: its Dial and policy.
	Dial        string   `json:"dial,omitempty"`
	Readers     []string `json:"readers,omitempty"`
	DenyControl bool     `json:"deny_control,omitempty"`
}

// GuestList is the content of guests.json.
type GuestList struct {
	Guests   []GuestRecord    `json:"guests"`
	Pairings []PendingPairing `json:"pairings,omitempty"`
}

func (l *GuestList) find(name string) int {
	return slices.IndexFunc(l.Guests, func(g GuestRecord) bool { return g.Name == name })
}

// ByKey returns the guest with key fp, if any. A nil list has none.
func (l *GuestList) ByKey(fp Fingerprint) (GuestRecord, bool) {
	if l == nil {
		return GuestRecord{}, false
	}
	for _, g := range l.Guests {
		if g.Key.Equal(fp) {
			return g, true
		}
	}
	return GuestRecord{}, false
}

// Current returns the record of the guest called name with key fp, and
// whether it may still connect under that name: not revoked, not paired
// again with another key or under another name.
func (l *GuestList) Current(fp Fingerprint, name string) (GuestRecord, bool) {
	g, ok := l.ByKey(fp)
	return g, ok && g.Active() && g.Name == name
}

// Errors of HostState that callers branch on.
var (
	ErrUnknownGuest = errors.New("relay: no guest of that name")
	ErrGuestExists  = errors.New("relay: a guest of that name is paired")
	ErrBadName      = errors.New("relay: guest names are 1 to 64 letters, digits, '.', '_' or '-'")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// checkName reports whether name can name a guest.
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

// OpenHostState opens the state directory dir, creating it (mode 0700) and
// the host key on first use. It refuses a directory or key file that others
// may read or write.
func OpenHostState(dir string) (*HostState, error) {
	if err := unixsock.MkdirPrivate(dir); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	// Under the lock, so that two commands started at once (serve and
	// pair) do not each make a key.
	unlock, err := unixsock.Lock(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("relay: lock %s: %w", dir, err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, hostKeyFile))
	unlock()
	if err != nil {
		return nil, err
	}
	id, err := NewIdentity(key)
	if err != nil {
		return nil, err
	}
	return &HostState{dir: dir, id: id}, nil
}

// Dir is the state directory.
func (s *HostState) Dir() string { return s.dir }

// Fingerprint is the fingerprint of the host key, which guests pin.
func (s *HostState) Fingerprint() Fingerprint { return s.id.fp }

// Identity is the host key, for the host's TLS configuration.
func (s *HostState) Identity() *Identity { return s.id }

// Guests returns the paired guests, revoked ones included.
func (s *HostState) Guests() ([]GuestRecord, error) {
	l, _, err := s.LoadGuests()
	if err != nil {
		return nil, err
	}
	return l.Guests, nil
}

// Pair creates a pairing token for a new guest called name, valid once until
// ttl has passed. A pending token for the same name is replaced. A name that
// belongs to an active guest is refused with ErrGuestExists; the name of a
// revoked guest may be paired again, and the new key replaces the old one
// when the guest joins.
func (s *HostState) Pair(name string, ttl time.Duration, now time.Time) (Token, error) {
	return s.PairWith(name, PairOptions{}, ttl, now)
}

// PairWith is Pair with options. With o.Dial the host connects to the
// guest instead of the guest connecting to the host: a serving Host dials
// o.Dial until the guest joins with the token (JoinListening), and from
// then on keeps a connection to it up; the caller checks that o.Dial is an
// address relay mode can dial (relay.CheckAddr). o.Policy is the guest's
// reader policy once it joins.
func (s *HostState) PairWith(name string, o PairOptions, ttl time.Duration, now time.Time) (Token, error) {
	if err := checkName(name); err != nil {
		return Token{}, err
	}
	if err := o.Policy.Validate(); err != nil {
		return Token{}, err
	}
	var rec GuestRecord
	rec.setPolicy(o.Policy)
	tok, err := newToken(s.id.fp)
	if err != nil {
		return Token{}, err
	}
	err = s.update(func(l *GuestList) error {
		if i := l.find(name); i >= 0 && l.Guests[i].Active() {
			return fmt.Errorf("%w: %s", ErrGuestExists, name)
		}
		l.Pairings = slices.DeleteFunc(l.Pairings, func(p PendingPairing) bool {
			return p.Name == name || !now.Before(p.Expires)
		})
		l.Pairings = append(l.Pairings, PendingPairing{
			Name: name, Secret: sha256.Sum256(tok.Secret[:]), Expires: now.Add(ttl),
			Dial: o.Dial, Readers: rec.Readers, DenyControl: rec.DenyControl,
		})
		return nil
	})
	return tok, err
}

// Revoke cuts the guest called name off: the host refuses its key from now
// on, and a serving Host closes its connection within
// HostConfig.PollInterval. Its pending pairing, if any, is dropped.
func (s *HostState) Revoke(name string, now time.Time) error {
	return s.update(func(l *GuestList) error {
		n := len(l.Pairings)
		l.Pairings = slices.DeleteFunc(l.Pairings, func(p PendingPairing) bool { return p.Name == name })
		i := l.find(name)
		if i < 0 {
			if n != len(l.Pairings) {
				return nil
			}
			return fmt.Errorf("%w: %s", ErrUnknownGuest, name)
		}
		if l.Guests[i].Active() {
			l.Guests[i].Revoked = now
		}
		return nil
	})
}

// SetPolicy replaces the reader policy of the guest called name, or of its
// pending pairing; nil lets it use every reader. A serving Host cuts the
// guest's connection within HostConfig.PollInterval, so that its next one,
// made at once, is served under the new policy.
func (s *HostState) SetPolicy(name string, p *pcsc.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return s.update(func(l *GuestList) error {
		found := false
		for i := range l.Pairings {
			if l.Pairings[i].Name == name {
				var rec GuestRecord
				rec.setPolicy(p)
				l.Pairings[i].Readers, l.Pairings[i].DenyControl = rec.Readers, rec.DenyControl
				found = true
			}
		}
		i := l.find(name)
		switch {
		case i >= 0 && l.Guests[i].Active():
			l.Guests[i].setPolicy(p)
		case found:
		case i >= 0:
			return fmt.Errorf("relay: %s was revoked; pair it again with the policy", name)
		default:
			return fmt.Errorf("%w: %s", ErrUnknownGuest, name)
		}
		return nil
	})
}

// errPairingRefused is the host's verdict on a secret that matches no
// pending pairing, or one that expired. The host logs why; the guest is told
// nothing more than that its pairing was refused.
var errPairingRefused = errors.New("relay: pairing refused")

// Redeem uses the pending pairing whose secret is secret: it records the
// guest's key fp under the pairing's name and drops the pairing. An expired
// pairing is dropped too, and refused.
func (s *HostState) Redeem(secret [SecretSize]byte, fp Fingerprint, now time.Time) (GuestRecord, error) {
	var rec GuestRecord
	expired := ""
	sum := Fingerprint(sha256.Sum256(secret[:]))
	err := s.update(func(l *GuestList) error {
		i := slices.IndexFunc(l.Pairings, func(p PendingPairing) bool { return p.Secret.Equal(sum) })
		if i < 0 {
			return fmt.Errorf("%w: no pending pairing has that secret (wrong, or used already)", errPairingRefused)
		}
		p := l.Pairings[i]
		l.Pairings = slices.Delete(l.Pairings, i, i+1)
		if !now.Before(p.Expires) {
			expired = p.Name
			return nil
		}
		if g, ok := l.ByKey(fp); ok {
			return fmt.Errorf("relay: key %s is already paired as %s", fp, g.Name)
		}
		rec = GuestRecord{Name: p.Name, Key: fp, Paired: now, Dial: p.Dial, Readers: p.Readers, DenyControl: p.DenyControl}
		if j := l.find(p.Name); j >= 0 {
			if l.Guests[j].Active() {
				return fmt.Errorf("%w: %s", ErrGuestExists, p.Name)
			}
			l.Guests[j] = rec
		} else {
			l.Guests = append(l.Guests, rec)
		}
		return nil
	})
	if err == nil && expired != "" {
		err = fmt.Errorf("%w: the token for %s expired", errPairingRefused, expired)
	}
	return rec, err
}

// LoadGuests reads guests.json; a missing file is an empty list. It also
// returns the file's identity, to notice later changes (Changed).
func (s *HostState) LoadGuests() (*GuestList, os.FileInfo, error) {
	path := filepath.Join(s.dir, guestsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return new(GuestList), nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("relay: read guest list: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("relay: read guest list: %w", err)
	}
	l := new(GuestList)
	if err := json.NewDecoder(f).Decode(l); err != nil {
		return nil, nil, fmt.Errorf("relay: read guest list %s: %w", path, err)
	}
	return l, fi, nil
}

// Changed reports whether guests.json is no longer the file fi describes.
func (s *HostState) Changed(fi os.FileInfo) bool {
	now, err := os.Stat(filepath.Join(s.dir, guestsFile))
	if err != nil {
		return fi != nil || !errors.Is(err, fs.ErrNotExist)
	}
	return fi == nil || !os.SameFile(fi, now) || !fi.ModTime().Equal(now.ModTime()) || fi.Size() != now.Size()
}

// update applies fn to the guest list under the lock and writes the result,
// unless fn fails.
func (s *HostState) update(fn func(*GuestList) error) error {
	unlock, err := unixsock.Lock(filepath.Join(s.dir, lockFile))
	if err != nil {
		return fmt.Errorf("relay: lock %s: %w", s.dir, err)
	}
	defer unlock()
	l, _, err := s.LoadGuests()
	if err != nil {
		return err
	}
	if err := fn(l); err != nil {
		return err
	}
	b, err := json.MarshalIndent(l, "", "\t")
	if err != nil {
		return err
	}
	if err := unixsock.WriteFileAtomic(filepath.Join(s.dir, guestsFile), append(b, '\n')); err != nil {
		return fmt.Errorf("relay: write guest list: %w", err)
	}
	return nil
}

func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := generateKey()
		if err != nil {
			return nil, err
		}
		pemKey, err := marshalKey(key)
		if err != nil {
			return nil, err
		}
		if err := unixsock.WriteFileAtomic(path, pemKey); err != nil {
			return nil, fmt.Errorf("relay: write host key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("relay: read host key: %w", err)
	}
	if err := unixsock.CheckPrivateFile(path); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("relay: host key %s: %w", path, err)
	}
	return key, nil
}
