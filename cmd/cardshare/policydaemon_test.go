package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// TestCLIPolicyUnknownDaemon: with a reader policy or an audit log,
// expose, up and relay serve refuse to start on a pcscd whose protocol the
// proxy does not know (here 4.7), with the error and its hint, before any
// guest is reached; without either they start as before (issue 13, item 2).
func TestCLIPolicyUnknownDaemon(t *testing.T) {
	t.Parallel()
	fake := pcsctest.Start(t, pcsc.Daemon{Version: pcsc.Version{Major: 4, Minor: 7}})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := "host:\n  pcscd_socket: " + fake.Socket + "\nguests:\n  - name: vm\n    destination: nobody@127.0.0.1:1\n    readers: [\"Yubico*\"]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"expose readers": {"expose", "--pcscd-socket", fake.Socket, "--readers", "Yubico*", "vm"},
		"expose audit":   {"expose", "--pcscd-socket", fake.Socket, "--audit", "vm"},
		"up readers":     {"up", "--config", cfg, "--control-socket", filepath.Join(dir, "ctl", "c.sock")},
		"relay audit":    {"relay", "serve", "--pcscd-socket", fake.Socket, "--audit", "--listen", "none", "--state-dir", filepath.Join(dir, "state"), "--control-socket", filepath.Join(dir, "ctl2", "c.sock")},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errs := cli(t, "", args...)
			if code != 1 || !strings.Contains(errs, fake.Socket+": pcsc: protocol version unknown to cardshare's proxy") ||
				!strings.Contains(errs, "cardshare: hint: this pcsc-lite is newer than this cardshare") {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
		})
	}
}
