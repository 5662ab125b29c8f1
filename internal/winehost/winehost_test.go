//go:build linux

package winehost

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWineHost runs testdata/winserve (windows/amd64: bridge.Serve over
// nativepcsc's Source.Dial, a net.Pipe on Windows) under the chroot's
// Wine, whose winscard.dll uses the chroot's libpcsclite and pcscd
// (pcsc-lite 2.3.3, protocol 4.5 strict) with vpcd and the test card. This
// machine's libpcsclite (1.9.9, protocol 4.4) is the guest: list, hello,
// a blocking wait that sees a card inserted, and pcsc_scan, through a
// Unix socket relayed to winserve's loopback TCP port.
func TestWineHost(t *testing.T) {
	r := newRig(t)
	exe := r.build(t, "./internal/winehost/testdata/winserve", "winserve.exe", false)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := r.start(t, exe, addr)
	t.Logf("under Wine: %s", w.waitFor(t, `(?m)^serving on .*$`, 3*time.Minute))
	t.Logf("under Wine: %s", w.waitFor(t, `(?m)^library .*$`, time.Second))

	guest := serveUnix(t, filepath.Join(guestDir(t), "pcscd.comm"), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	checkGuest(t, r.pcscd, guest, w)
}

// TestWinePackages runs package tests built for windows/amd64 under
// Wine: internal/control's tests of the control socket on this system's
// own AF_UNIX (under Wine Listen and Query must both say ErrUnavailable,
// Winsock's WSAEAFNOSUPPORT, which `up`, `relay serve` and `status` rely
// on), all of internal/sshconfig's (the reader Resolve uses when there
// is no ssh program, with Windows paths) and all of internal/neterr's
// (Winsock's own numbers for a refused dial and a reset connection).
// internal/sshdial's tests are not among them: they assume Unix paths and
// an agent on a Unix socket.
func TestWinePackages(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		pkg, run string
		want     []string
	}{
		{"control", "^TestControlSocketHere$", []string{"--- PASS: TestControlSocketHere", "no AF_UNIX here"}},
		{"sshconfig", ".", []string{"--- PASS: TestRead", "--- PASS: FuzzRead"}},
		{"neterr", ".", []string{"--- PASS: TestNumbers", "--- PASS: TestRefusedHere", "--- PASS: TestResetHere", "no AF_UNIX here"}},
	} {
		exe := r.build(t, "./internal/"+c.pkg, c.pkg+".test.exe", true)
		out, err := r.run(t, 2*time.Minute, exe, "-test.v", "-test.count=1", "-test.run", c.run)
		for _, w := range c.want {
			if err != nil || !strings.Contains(out, w) || !strings.Contains(out, "\nPASS") {
				t.Fatalf("internal/%s under Wine: %v, no %q:\n%s", c.pkg, err, w, out)
			}
		}
		t.Logf("internal/%s under Wine:\n%s", c.pkg, out)
	}
}
