package forward_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/testenv"
)

func TestProbeStreamLocal(t *testing.T) {
	t.Parallel()
	ok := testenv.StartSSHD(t, testenv.SSHDOptions{})
	refused := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	if err := forward.ProbeStreamLocal(context.Background(), harnessClient(t, ok)); err != nil {
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
	err := forward.ProbeStreamLocal(context.Background(), harnessClient(t, refused))
	if !errors.Is(err, forward.ErrForwardRefused) {
		t.Errorf("refused: err = %v, want ErrForwardRefused", err)
	}
}

// harnessClient connects to the test sshd as its guest user.
func harnessClient(t *testing.T, s *testenv.SSHD) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := sshdial.Resolve(ctx, s.HostAlias, s.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sshdial.Dial(ctx, tg, sshdial.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fileOwner(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
