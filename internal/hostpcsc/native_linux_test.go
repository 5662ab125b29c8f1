//go:build linux

package hostpcsc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

// TestBackends chooses each backend against a real pcscd with the test
// card: socket and native by name, and auto with and without a pcscd
// socket that answers; a guest client gets "Hello world!" through each.
func TestBackends(t *testing.T) {
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	scardtest.UseSocket(t, p.Socket)
	client := testenv.BuildClient(t)
	missing := filepath.Join(t.TempDir(), "missing.comm")
	ctx := context.Background()
	for _, tc := range []struct {
		name, backend, socket, want, why string
	}{
		{"socket", hostpcsc.PCSCDSocket, p.Socket, hostpcsc.PCSCDSocket, ""},
		{"native", hostpcsc.Native, missing, hostpcsc.Native, ""},
		{"auto picks the socket", hostpcsc.Auto, p.Socket, hostpcsc.PCSCDSocket, "answers"},
		{"auto falls back to native", hostpcsc.Auto, missing, hostpcsc.Native, "does not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, d, err := hostpcsc.Open(ctx, tc.backend, tc.socket, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer hostpcsc.Close(src)
			if got := hostpcsc.BackendOf(src); got != tc.want {
				t.Fatalf("backend %q (%s), want %q", got, src, tc.want)
			}
			if tc.want == hostpcsc.Native && d != nativepcsc.Daemon {
				t.Errorf("native daemon %v", d)
			}
			if tc.why != "" {
				c, err := hostpcsc.Pick(ctx, tc.socket, nil)
				if err != nil {
					t.Fatal(err)
				}
				hostpcsc.Close(c.Source)
				if !strings.Contains(c.Why, tc.why) {
					t.Errorf("Why = %q, want %q", c.Why, tc.why)
				}
			}
			sock := serveOnce(t, src, d)
			if out, err := testenv.RunClient(t, client, sock, "hello"); err != nil || !strings.Contains(out, "Hello world!") {
				t.Errorf("hello through %s: %q, %v", src, out, err)
			}
		})
	}
}

// TestAutoNeither: with no pcscd at all, auto fails with the socket's
// error first and the native backend's in the chain, and leaves nothing
// open.
func TestAutoNeither(t *testing.T) {
	dir := t.TempDir()
	scardtest.UseSocket(t, filepath.Join(dir, "none.comm"))
	_, _, err := hostpcsc.Open(context.Background(), hostpcsc.Auto, filepath.Join(dir, "missing.comm"), nil)
	var ae *hostpcsc.AutoError
	if !errors.As(err, &ae) || !errors.Is(err, pcsc.ErrNoDaemon) {
		t.Fatalf("err = %v, want an AutoError with pcsc.ErrNoDaemon", err)
	}
	if !strings.HasPrefix(err.Error(), "host pcscd at ") || !strings.Contains(err.Error(), "; native backend: ") {
		t.Errorf("message %q", err)
	}
	if _, _, err := hostpcsc.Open(context.Background(), hostpcsc.Native, "", nil); err == nil || !strings.HasPrefix(err.Error(), "host PC/SC: ") {
		t.Errorf("native without pcscd: %v", err)
	}
}
