//go:build unix

package forward_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/testenv"
)

// TestExposeCleanupThroughKeeper: on stop, the guest socket is removed
// through the keeper session that is already open, not a new session,
// which a loaded or restrictive sshd refuses. Here sshd allows one session
// per connection (MaxSessions 1), which the keeper holds: a cleanup that
// opens a new session leaves the socket behind, as 94 of 100 were left
// when `up` stopped a hundred guests on one sshd (issue 13, item 10).
func TestExposeCleanupThroughKeeper(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"MaxSessions 1"}})
	e := expose(t, p, []forward.Guest{guestOf(t, s, "")}, nil)
	up := e.wait(t, forward.StateUp)
	if err := e.stop(t); err != nil {
		t.Fatalf("Expose: %v", err)
	}
	if _, err := os.Lstat(up.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest socket after stop: %v, want it removed\n%s", err, e.log)
	}
	if !strings.Contains(e.log.String(), "removed guest socket") {
		t.Errorf("no log line about the removal:\n%s", e.log)
	}
}
