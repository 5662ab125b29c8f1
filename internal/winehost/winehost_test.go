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

// TestWineControl runs internal/control's tests of the control socket on
// this system's own AF_UNIX, built for windows/amd64, under Wine: there
// Listen and Query must both say ErrUnavailable (Winsock's
// WSAEAFNOSUPPORT), which `up`, `relay serve` and `status` rely on.
func TestWineControl(t *testing.T) {
	r := newRig(t)
	exe := r.build(t, "./internal/control", "control.test.exe", true)
	out, err := r.run(t, 2*time.Minute, exe, "-test.v", "-test.count=1", "-test.run", "^(TestControlSocketHere|TestNoUnixSockets)$")
	if err != nil || !strings.Contains(out, "--- PASS: TestControlSocketHere") || !strings.Contains(out, "no AF_UNIX here") ||
		!strings.Contains(out, "--- PASS: TestNoUnixSockets") {
		t.Fatalf("internal/control under Wine: %v:\n%s", err, out)
	}
	t.Logf("internal/control under Wine:\n%s", out)
}
