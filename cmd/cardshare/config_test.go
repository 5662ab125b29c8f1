package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/config"
)

// The example in `cardshare config --help` is a valid file, without a
// warning.
func TestConfigHelpExample(t *testing.T) {
	c, err := config.Parse("help", []byte(configExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Guests) != 3 || len(c.Warnings()) != 0 {
		t.Errorf("example: %d guests, warnings %v", len(c.Guests), c.Warnings())
	}
}

// The example works as written on a machine with nothing but cardshare:
// no ~/.ssh/config, no VM manager. config check exits 0; its only warning
// is that the vm: of the example is no VM it knows.
func TestConfigHelpExampleChecks(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	file := filepath.Join(home, "config.yaml")
	if err := os.WriteFile(file, []byte(configExample), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "config", "check", "--config", file)
	if code != 0 {
		t.Fatalf("config check of the example: exit %d\n%s%s", code, out, errs)
	}
	if n := strings.Count(errs, "cardshare: warning: "); n != 1 || !strings.Contains(errs, "guest build: build is not a Host") {
		t.Errorf("warnings:\n%s", errs)
	}
}
