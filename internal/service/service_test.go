package service

import (
	"flag"
	"os"
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
		"":                            `""`,
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
