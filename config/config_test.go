package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func errs(err error) []error {
	if err == nil {
		return nil
	}
	return unjoin(err)
}

// render prints what `cardshare config check` would: each error or
// warning with its hint.
func render(c *Config, err error) string {
	var b strings.Builder
	for _, e := range errs(err) {
		b.WriteString("error: " + e.Error() + "\n")
		var ce *Error
		if errors.As(e, &ce) && ce.Hint != "" {
			b.WriteString("hint: " + ce.Hint + "\n")
		}
	}
	if c != nil {
		for _, w := range c.Warnings() {
			b.WriteString("warning: " + w.Error() + "\nhint: " + w.Hint + "\n")
		}
	}
	return b.String()
}

// TestGolden parses every testdata/*.yaml and compares the errors and
// warnings, with their hints, to testdata/*.golden. Files named bad-* must
// fail; the others must parse. Run with -update to rewrite the goldens.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, err := Load(f)
			bad := strings.HasPrefix(name, "bad-")
			if bad != (err != nil) {
				t.Fatalf("Load error = %v, want error: %v", err, bad)
			}
			for _, e := range errs(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != f || ce.Hint == "" {
					t.Errorf("error %v is not an *Error of %s with a hint", e, f)
				}
			}
			got := render(c, err)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	c, err := Load("testdata/good-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Host{
		Backend:     "socket",
		PCSCDSocket: "/run/pcscd/pcscd.comm",
		Keepalive:   10 * time.Second,
		LogLevel:    "debug",
		LogFormat:   "json",
		SSHConfig:   "/etc/cardshare/ssh_config",
		AcceptNew:   true,
	}
	if c.Host != want {
		t.Errorf("host = %+v, want %+v", c.Host, want)
	}
	wantGuests := []Guest{
		{Name: "devvm", Destination: "dev@127.0.0.1:2222", Socket: "/run/user/1000/cardshare/pcscd.comm", SetupGuest: true, Line: 12},
		{Name: "build", VM: "build", Readers: []string{"Yubico YubiKey*", "REINER SCT*"}, Control: "deny", Audit: true, Line: 16},
		{Name: "ci-runner", Destination: "ci-runner", Line: 20},
	}
	if !reflect.DeepEqual(c.Guests, wantGuests) {
		t.Errorf("guests =\n%+v\nwant\n%+v", c.Guests, wantGuests)
	}
	if c.Guests[1].Target() != "build" || c.Guests[0].Target() != "dev@127.0.0.1:2222" {
		t.Errorf("Target() = %q, %q", c.Guests[0].Target(), c.Guests[1].Target())
	}
}

// The sample of examples/virtualbox is the file the walkthrough tells
// users to copy: it must parse, without warnings.
func TestExampleVirtualBox(t *testing.T) {
	c, err := Load("../examples/virtualbox/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Guests) != 1 {
		t.Fatalf("%d guests, want 1", len(c.Guests))
	}
	g := c.Guests[0]
	if !strings.HasSuffix(g.Destination, "@127.0.0.1:2222") || !g.SetupGuest {
		t.Errorf("guest %+v: want a destination on the NAT forward 127.0.0.1:2222 and setup_guest", g)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
}

func TestEmptyIsDefault(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "---\n", "host:\nguests:\n"} {
		c, err := Parse("x.yaml", []byte(data))
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		want := Default()
		want.File = "x.yaml"
		c.lines = nil
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%q: got %+v, want %+v", data, c, want)
		}
	}
}

// A Config built in code is checked by Validate; its errors have no file.
func TestValidateInCode(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default(): %v", err)
	}
	c := Default()
	c.Guests = []Guest{{Name: "a", Destination: "x", Socket: "rel/path"}, {Destination: "x", Socket: "rel/path"}}
	err := c.Validate()
	es := errs(err)
	if len(es) != 3 {
		t.Fatalf("want 3 errors (two relative sockets, one shared socket), got %v", err)
	}
	if !strings.HasPrefix(es[0].Error(), "config: socket \"rel/path\" is not an absolute path") {
		t.Errorf("error %q: want a config: prefix and no file", es[0])
	}
	if !strings.Contains(es[2].Error(), `guests "a" and "x" would forward into the same guest socket`) {
		t.Errorf("error %q", es[2])
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_CONFIG_HOME", "")
	if p, _ := DefaultPath(); p != "/home/u/.config/cardshare/config.yaml" {
		t.Errorf("DefaultPath() = %q", p)
	}
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if p, _ := DefaultPath(); p != "/xdg/cardshare/config.yaml" {
		t.Errorf("with XDG_CONFIG_HOME: %q", p)
	}
	t.Setenv("XDG_CONFIG_HOME", "relative") // ignored, as the XDG spec says
	if p, _ := DefaultPath(); p != "/home/u/.config/cardshare/config.yaml" {
		t.Errorf("with a relative XDG_CONFIG_HOME: %q", p)
	}
}

func TestHomeExpansion(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	c, err := Parse("x.yaml", []byte("host:\n  ssh_config: ~/.ssh/vms\n  pcscd_socket: ~/pcscd.comm\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Host.SSHConfig != "/home/u/.ssh/vms" || c.Host.PCSCDSocket != "/home/u/pcscd.comm" {
		t.Errorf("host = %+v", c.Host)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want ErrNotExist", err)
	}
}

// FuzzParse checks that no input panics and that every failure is a list
// of *Error values at lines of the input.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil Config without error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted what Validate refuses: %v", err)
			}
			return
		}
		// YAML also breaks lines at a lone \r: count both, an upper bound.
		lines := strings.Count(string(data), "\n") + strings.Count(string(data), "\r") + 1
		for _, e := range errs(err) {
			var ce *Error
			if !errors.As(e, &ce) {
				t.Fatalf("error %v (%T) is not an *Error", e, e)
			}
			if ce.Line < 0 || ce.Line > lines+1 {
				t.Fatalf("error %v: line %d outside the input's %d lines", e, ce.Line, lines)
			}
		}
	})
}

// host.max_guest_conns and host.max_conns cap the connections of a guest
// and of all guests on pcscd (issue 13, item 4).
func TestConnCaps(t *testing.T) {
	c, err := Parse("x.yaml", []byte("host:\n  max_guest_conns: 8\n  max_conns: 100\n"))
	if err != nil || c.Host.MaxGuestConns != 8 || c.Host.MaxConns != 100 {
		t.Fatalf("%+v, %v", c.Host, err)
	}
	for data, want := range map[string]string{
		"host:\n  max_guest_conns: 500\n":                 "x.yaml:2: max_guest_conns 500 is out of range",
		"host:\n  max_conns: many\n":                      `x.yaml:2: max_conns: "many" is not a whole number`,
		"host:\n  max_guest_conns: 50\n  max_conns: 40\n": "x.yaml:2: max_guest_conns 50 is above max_conns 40",
	} {
		if _, err := Parse("x.yaml", []byte(data)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", data, err, want)
		}
	}
}
