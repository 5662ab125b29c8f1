//go:build unix

package guestsetup

import (
	"context"
	"testing"

	"github.com/cardshare/cardshare/internal/testenv"
)

func TestInspectEnv(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := harnessClient(t, s)
	ctx := context.Background()
	e, err := InspectEnv(ctx, c)
	if err != nil || e.Profile != ".profile" || e.ProfileSocket != "" || e.Shell != "/bin/sh" {
		t.Fatalf("before setup: %+v, %v", e, err)
	}
	const sock = "/tmp/it's here/pcscd.comm"
	src, _, _ := withBlock(nil, false, sock)
	writeAsGuest(t, s, ".profile", string(src))
	if e, err := InspectEnv(ctx, c); err != nil || e.ProfileSocket != sock {
		t.Errorf("after setup: %+v, %v", e, err)
	}
}
