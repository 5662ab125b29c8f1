package relay_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/relay"
	"github.com/cardshare/cardshare/relay/trust"
)

func TestRepairAfterRevoke(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	old := h.join(t, "vm1")
	if _, err := h.state.Pair("vm1", time.Minute, time.Now()); !errors.Is(err, trust.ErrGuestExists) {
		t.Fatalf("pairing an active name: %v, want ErrGuestExists", err)
	}
	if err := h.state.Revoke("vm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	renewed := h.join(t, "vm1")
	a := startAgent(t, old, nil)
	if err := <-a.done; !errors.Is(err, relay.ErrGuestRefused) {
		t.Errorf("old key: %v, want ErrGuestRefused", err)
	}
	a.done <- nil
	b := startAgent(t, renewed, nil)
	b.waitConnected(t)
	guests, _ := h.state.Guests()
	if len(guests) != 1 || !guests[0].Active() {
		t.Errorf("guests %+v, want vm1 active once", guests)
	}
}

func TestCredentialsFile(t *testing.T) {
	h := startHost(t, hostpcsc.Socket{Path: "/nonexistent"}.Dial, nil)
	creds := h.join(t, "vm1")
	path := filepath.Join(t.TempDir(), "guest", "credentials.json")
	if err := creds.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials mode %v, %v; want 0600", fi.Mode(), err)
	}
	back, err := trust.LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Guest != creds.Guest || back.Host != creds.Host || back.HostKey != creds.HostKey || !back.Key.Equal(creds.Key) {
		t.Errorf("loaded %+v, saved %+v", back, creds)
	}
	os.Chmod(path, 0o644)
	if _, err := trust.LoadCredentials(path); !errors.Is(err, unixsock.ErrUnsafePermissions) {
		t.Errorf("mode 0644: %v, want ErrUnsafePermissions", err)
	}
	if _, err := trust.LoadCredentials(path + ".missing"); !errors.Is(err, trust.ErrNoCredentials) {
		t.Errorf("missing file: %v, want ErrNoCredentials", err)
	}
}

// Commands started at once (serve and pair) agree on the host key.
