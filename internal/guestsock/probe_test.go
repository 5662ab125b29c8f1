//go:build unix

package guestsock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cardshare/cardshare/internal/testenv"
)

func TestProbeStreamLocal(t *testing.T) {
	t.Parallel()
	ok := testenv.StartSSHD(t, testenv.SSHDOptions{})
	refused := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	if err := ProbeStreamLocal(context.Background(), harnessClient(t, ok)); err != nil {
		t.Errorf("allowed: %v", err)
	}
	if m, _ := filepath.Glob("/tmp/cardshare-doctor.*"); len(m) > 0 {
		// Other tests may probe at the same time; ours must be gone.
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fileOwner(fi) == ok.UID {
				t.Errorf("probe directory %s left behind", d)
			}
		}
	}
	err := ProbeStreamLocal(context.Background(), harnessClient(t, refused))
	if !errors.Is(err, ErrForwardRefused) {
		t.Errorf("refused: err = %v, want ErrForwardRefused", err)
	}
}

func fileOwner(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
