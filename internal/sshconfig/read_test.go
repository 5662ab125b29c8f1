package sshconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Files are read in order: the first value wins across them, and
// IdentityFile adds up; Include is relative to the file's Dir.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "inc.conf", "User included\nIdentityFile inc_key\n")
	user := write(t, dir, "config", `Host vm
  Include inc.conf
  IdentityFile a
Match user included
  Port 2200
Host *
  User other
  Port 22
`)
	sys := write(t, dir, "system", "Host *\n  HostName sys.example\n  IdentityFile b\n  Port 1\n")
	o, err := Read(Query{Host: "vm", Home: dir}, File{Path: user, Dir: dir}, File{Path: filepath.Join(dir, "missing")}, File{Path: sys, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) string { v, _ := o.Get(k); return v }
	if get("user") != "included" || get("port") != "2200" || get("hostname") != "sys.example" {
		t.Errorf("options = %+v", o.First)
	}
	var ids []string
	for _, v := range o.IdentityFiles {
		ids = append(ids, v.Args[0])
	}
	if !slices.Equal(ids, []string{"inc_key", "a", "b"}) {
		t.Errorf("IdentityFiles = %q", ids)
	}
	if w := o.First["port"].Where; !strings.HasSuffix(w, "config:5") {
		t.Errorf("port from %s", w)
	}
	if _, err := Read(Query{Host: "vm"}, File{Path: filepath.Join(dir, "missing"), Required: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("required missing file: %v", err)
	}
}

func TestSplitLine(t *testing.T) {
	for line, want := range map[string][]string{
		"":                              nil,
		"   # comment":                  nil,
		"Host a b":                      {"host", "a", "b"},
		"HostName=example.org":          {"hostname", "example.org"},
		"Port = 22 # trailing":          {"port", "22"},
		"\tIdentityFile \"a b\" c":      {"identityfile", "a b", "c"},
		"LocalCommand echo a=b":         {"localcommand", "echo", "a=b"},
		"IdentityFile C:\\Users\\me\\k": {"identityfile", "C:\\Users\\me\\k"},
	} {
		k, args, err := splitLine(line)
		got := append([]string{k}, args...)
		if k == "" {
			got = nil
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitLine(%q) = %q, %v, want %q", line, got, err, want)
		}
	}
}

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		host     string
		patterns []string
		want     bool
	}{
		{"myvm", []string{"myvm"}, true},
		{"MyVM", []string{"myvm"}, true},
		{"vm1.lan", []string{"*.lan"}, true},
		{"vm1.lan", []string{"vm?.lan"}, true},
		{"vm12.lan", []string{"vm?.lan"}, false},
		{"old.lan", []string{"*.lan", "!old.lan"}, false},
		{"x", []string{"!y"}, false},
		{"x", nil, false},
		{"", []string{"*"}, true},
	} {
		if got := HostMatches(c.host, c.patterns); got != c.want {
			t.Errorf("HostMatches(%q, %q) = %v", c.host, c.patterns, got)
		}
	}
}

// The reader takes any file without panicking, and every error names the
// file and line.
func FuzzRead(f *testing.F) {
	f.Add("Host a* !ab\n  HostName=x\n  IdentityFile \"a b\"\nMatch exec true\n  Port 2\n")
	f.Add("Match host a,b !user c localuser d\nPort 1\n")
	f.Add("Host \"unterminated\n")
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config")
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := Read(Query{Host: "vm", User: "u", LocalUser: "me", Home: dir}, File{Path: cfg, Dir: dir, Required: true})
		if err != nil {
			return
		}
		for _, v := range o.First {
			if len(v.Args) == 0 || v.Where == "" {
				t.Fatalf("value %+v", v)
			}
		}
	})
}
