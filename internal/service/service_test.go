package service

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestUnitFile compares the unit text with testdata/cardshare.service.golden;
// -update rewrites it.
func TestUnitFile(t *testing.T) {
	got, err := UnitFile("/usr/local/bin/cardshare", "/home/me/.config/cardshare/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
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

// TestUnitFileRefusesLineBreaks: a newline in a path would end ExecStart
// and start a directive of the path's choosing (issue 13, item 11); the
// unit names kill by its absolute path.
func TestUnitFileRefusesLineBreaks(t *testing.T) {
	for _, p := range []string{"/home/me/x\nExecStartPre=/bin/sh -c evil", "/a\rb", "/a\x00b"} {
		if u, err := UnitFile("/usr/bin/cardshare", p); !errors.Is(err, ErrUnsafe) {
			t.Errorf("config %q: %v, want ErrUnsafe; unit:\n%s", p, err, u)
		}
		if _, err := UnitFile(p, "/c.yaml"); !errors.Is(err, ErrUnsafe) {
			t.Errorf("binary %q: %v, want ErrUnsafe", p, err)
		}
	}
	u, _ := UnitFile("/usr/bin/cardshare", "/c.yaml")
	if !strings.Contains(u, "\nExecReload=/bin/kill -HUP $MAINPID\n") {
		t.Errorf("ExecReload is not an absolute path:\n%s", u)
	}
}
