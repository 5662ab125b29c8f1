package service

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestUnitFile compares the unit text with testdata/cardshare.service.golden;
// -update rewrites it.
func TestUnitFile(t *testing.T) {
	got := UnitFile("/usr/local/bin/cardshare", "/home/me/.config/cardshare/config.yaml")
	const golden = "testdata/cardshare.service.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("unit differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/cardshare":          "/usr/bin/cardshare",
		"/home/me/My VMs/config.yaml": `"/home/me/My VMs/config.yaml"`,
		"/home/me/100%/c.yaml":        "/home/me/100%%/c.yaml",
		"/home/$USER/c.yaml":          "/home/$$USER/c.yaml",
		`/odd "dir"\x`:                `"/odd \"dir\"\\x"`,
		"/a;b":                        `"/a;b"`,
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// Remove deletes only a unit that install wrote, and a missing one is fine.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, UnitName)
	if existed, err := Remove(path); existed || err != nil {
		t.Fatalf("missing unit: %v, %v", existed, err)
	}
	if _, _, err := Write(path, UnitFile("/bin/cardshare", "/c.yaml")); err != nil {
		t.Fatal(err)
	}
	if existed, err := Remove(path); !existed || err != nil {
		t.Fatalf("our unit: %v, %v", existed, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unit still there: %v", err)
	}
	os.WriteFile(path, []byte("[Unit]\nDescription=mine\n"), 0o644)
	if _, err := Remove(path); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("someone else's unit: %v, want ErrNotOurs", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("someone else's unit removed: %v", err)
	}
}
