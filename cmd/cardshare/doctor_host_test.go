package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/doctor"
	"github.com/cardshare/cardshare/internal/hostcheck"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/sshpaths"
)

// On macOS and Windows doctor prints internal/hostcheck's checks instead of
// the pcscd ones; without the native backend PC/SC is not checked, which
// is no failure.
func TestHostChecks(t *testing.T) {
	// This Linux machine's PC/SC is not the host under test: the PC/SC
	// service and readers checks are skipped as unprobed, and the backend
	// line is the socket's, which probes nothing.
	probe := probeNativePCSC
	t.Cleanup(func() { probeNativePCSC = probe })
	probeNativePCSC = func(context.Context) hostcheck.PCSC { return hostcheck.PCSC{Err: hostcheck.ErrNotProbed} }
	for _, goos := range []string{"darwin", "windows"} {
		h := sshpaths.Host{GOOS: goos, Home: t.TempDir(), Getenv: func(string) string { return "" }}
		var out bytes.Buffer
		sum := doctor.Run(context.Background(), &doctor.Config{
			Host:    hostChecks(h),
			Backend: hostpcsc.PCSCDSocket,
			Report:  func(name string, r doctor.Result) { printCheck(&out, name, r) },
		}, "")
		text := out.String()
		t.Logf("%s:\n%s", goos, text)
		for _, want := range []string{
			"SKIP  PC/SC service not checked: this build has no native PC/SC backend\n",
			"SKIP  readers       needs PC/SC\n",
			"ssh program",
			"ssh-agent",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: no %q in\n%s", goos, want, text)
			}
		}
		if strings.Contains(text, "host pcscd") || strings.Contains(text, "polkit") {
			t.Errorf("%s: pcscd checks in\n%s", goos, text)
		}
		if goos == "darwin" && !strings.Contains(text, "macOS") {
			t.Errorf("darwin: no macOS version check")
		}
		if sum.Failed != 0 || sum.Warned != 2 {
			t.Errorf("%s: want no failure and two warnings (no ssh program, no agent): %+v", goos, sum)
		}
	}
}
