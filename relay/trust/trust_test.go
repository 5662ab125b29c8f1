package trust_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay/trust"
)

func FuzzParseToken(f *testing.F) {
	f.Add("cs1-XWOmqaHG0o9GUaIH-Uw-UnSUfbuQKoQK7V08yglenl_kh-Shk97prEEhj2-VTaJA")
	f.Add("cs1-")
	f.Add(" cs1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
	f.Add("cs2-AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := trust.ParseToken(s)
		if err != nil {
			if !errors.Is(err, trust.ErrBadToken) {
				t.Fatalf("error %v is not ErrBadToken", err)
			}
			return
		}
		if enc := tok.String(); enc != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q).String() = %q", s, enc)
		}
	})
}

func TestFingerprintText(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := trust.FingerprintOf(pub)
	if err != nil {
		t.Fatal(err)
	}
	s := fp.String()
	if !strings.HasPrefix(s, "SHA256:") || len(s) != 7+43 {
		t.Errorf("fingerprint %q, want SHA256: and 43 characters", s)
	}
	back, err := trust.ParseFingerprint(s)
	if err != nil || back != fp {
		t.Errorf("round trip: %v, %v", back, err)
	}
	for _, bad := range []string{"", "SHA256:", "MD5:aa", s[:len(s)-1], s + "A"} {
		if _, err := trust.ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q): no error", bad)
		}
	}
}

func TestHostStateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	s, err := trust.OpenHostState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "host.key"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
		}
	}
	// The key survives a reopen.
	s2, err := trust.OpenHostState(dir)
	if err != nil || s2.Fingerprint() != s.Fingerprint() {
		t.Fatalf("reopened with key %v, %v; want %v", s2.Fingerprint(), err, s.Fingerprint())
	}
	// A key file others may read is refused; a directory of ours is
	// tightened.
	os.Chmod(filepath.Join(dir, "host.key"), 0o644)
	if _, err := trust.OpenHostState(dir); !errors.Is(err, unixsock.ErrUnsafePermissions) {
		t.Errorf("key mode 0644: %v, want ErrUnsafePermissions", err)
	}
	os.Chmod(filepath.Join(dir, "host.key"), 0o600)
	os.Chmod(dir, 0o755)
	if _, err := trust.OpenHostState(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("directory left at %v", fi.Mode().Perm())
	}

	tok, err := s.Pair("vm1", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "guests.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), tok.String()) || tok.HostKey != s.Fingerprint() {
		t.Errorf("state file holds the token, or the token names another key:\n%s", b)
	}
	if _, err := s.Pair("a/b", time.Minute, time.Now()); !errors.Is(err, trust.ErrBadName) {
		t.Errorf("Pair(a/b): %v, want ErrBadName", err)
	}
}

// Concurrent pair commands all land: the lock serializes them.
func TestHostStateConcurrentPairs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	if _, err := trust.OpenHostState(dir); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			s, err := trust.OpenHostState(dir)
			if err == nil {
				_, err = s.Pair("vm"+string(rune('a'+i)), time.Minute, time.Now())
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, _ := os.ReadFile(filepath.Join(dir, "guests.json"))
	if n := strings.Count(string(b), `"name"`); n != 20 {
		t.Errorf("%d pairings recorded, want 20", n)
	}
}

// A revoked name can be paired again; the new key replaces the old, which
// stays refused.
func TestHostStateConcurrentOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	fps := make([]trust.Fingerprint, 10)
	var wg sync.WaitGroup
	for i := range fps {
		wg.Go(func() {
			s, err := trust.OpenHostState(dir)
			if err != nil {
				t.Error(err)
				return
			}
			fps[i] = s.Fingerprint()
		})
	}
	wg.Wait()
	for _, fp := range fps {
		if fp != fps[0] {
			t.Fatalf("host keys differ: %v", fps)
		}
	}
}

func TestSetPolicy(t *testing.T) {
	s, err := trust.OpenHostState(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	yubi := &pcsc.Policy{Readers: []string{"Yubico*"}}
	if _, err := s.PairWith("vm1", trust.PairOptions{Policy: &pcsc.Policy{Readers: []string{"["}}}, time.Minute, time.Now()); err == nil {
		t.Error("PairWith took a malformed reader pattern")
	}
	if _, err := s.PairWith("vm1", trust.PairOptions{Policy: yubi}, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A pending pairing's policy can change before the guest joins.
	if err := s.SetPolicy("vm1", &pcsc.Policy{DenyControl: true}); err != nil {
		t.Errorf("SetPolicy on a pending pairing: %v", err)
	}
	if err := s.SetPolicy("vm2", yubi); !errors.Is(err, trust.ErrUnknownGuest) {
		t.Errorf("SetPolicy on an unknown guest: %v, want ErrUnknownGuest", err)
	}
	if err := s.SetPolicy("vm1", &pcsc.Policy{Readers: []string{"["}}); err == nil {
		t.Error("SetPolicy took a malformed reader pattern")
	}
	if err := s.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy("vm1", yubi); !errors.Is(err, trust.ErrUnknownGuest) {
		t.Errorf("SetPolicy after the pairing was revoked: %v, want ErrUnknownGuest", err)
	}
	if (trust.GuestRecord{}).Policy() != nil {
		t.Error("a record without a policy has one")
	}
	if p := (trust.GuestRecord{Readers: []string{"A*"}}).Policy(); p == nil || p.Readers[0] != "A*" || p.DenyControl {
		t.Errorf("Policy() = %+v", p)
	}
}
