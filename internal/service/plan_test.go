package service

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("differs from %s:\n--- got\n%s--- want\n%s", file, got, want)
	}
}

var (
	linuxSpec = Spec{Binary: "/usr/local/bin/cardshare", Args: UpArgs("linux", "/home/me/.config/cardshare/config.yaml", "")}
	macEnv    = Env{Home: "/Users/me"}
	macSpec   = Spec{Binary: "/opt/homebrew/bin/cardshare", UID: 501,
		Args: UpArgs("darwin", "/Users/me/Library/Application Support/cardshare/config.yaml", LogFile("darwin", macEnv))}
	winEnv  = Env{LocalAppData: `C:\Users\me\AppData\Local`}
	winSpec = Spec{Binary: `C:\Users\me\AppData\Local\Programs\cardshare\cardshare.exe`, WindowsUser: `DESKTOP-4F2K9QJ\me`,
		Args: UpArgs("windows", `C:\Users\me\AppData\Roaming\cardshare\config.yaml`, LogFile("windows", winEnv))}
)

// The unit is byte for byte the one cmd/cardshare writes today
// (testdata/cardshare.service.golden is a copy of its golden file), so
// that the command can switch to this package without a diff.
func TestUnitUnchanged(t *testing.T) {
	got, err := Unit(linuxSpec)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cardshare.service.golden", got)
}

// render shows a plan as text for the golden files; the Windows task file
// is decoded from UTF-16 (after checking its BOM and CRLFs).
func render(t *testing.T, p Plan) string {
	var b strings.Builder
	content := p.Content
	if bytes.HasPrefix(content, []byte{0xff, 0xfe}) {
		u := make([]uint16, (len(content)-2)/2)
		for i := range u {
			u[i] = uint16(content[2+2*i]) | uint16(content[3+2*i])<<8
		}
		s := string(utf16.Decode(u))
		if strings.Count(s, "\r\n") != strings.Count(s, "\n") {
			t.Error("task file has bare LF line ends")
		}
		content = []byte(strings.ReplaceAll(s, "\r\n", "\n"))
	}
	fmt.Fprintf(&b, "# file %s\n%s", p.Path, content)
	fmt.Fprintf(&b, "# dirs %q\n", p.Dirs)
	for _, s := range []struct {
		name string
		cmds []Command
	}{{"install", p.Install}, {"restart", p.Restart}, {"reload", p.Reload}, {"uninstall", p.Uninstall}, {"after remove", p.AfterRemove}, {"status", []Command{p.Status}}} {
		for _, c := range s.cmds {
			may := ""
			if c.MayFail {
				may = "  (may fail)"
			}
			fmt.Fprintf(&b, "# %s: %q%s\n", s.name, c.Args, may)
		}
	}
	fmt.Fprintf(&b, "# logs: %s\n", p.Logs)
	return b.String()
}

func TestPlans(t *testing.T) {
	for _, tt := range []struct {
		goos string
		spec Spec
		env  Env
	}{
		{"linux", linuxSpec, Env{Home: "/home/me"}},
		{"darwin", macSpec, macEnv},
		{"windows", winSpec, winEnv},
	} {
		t.Run(tt.goos, func(t *testing.T) {
			p, err := PlanFor(tt.goos, tt.spec, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "plan-"+tt.goos+".golden", render(t, p))
		})
	}
	// XDG_CONFIG_HOME moves the unit.
	p, _ := PlanFor("linux", linuxSpec, Env{Home: "/home/me", XDGConfigHome: "/srv/cfg"})
	if p.Path != "/srv/cfg/systemd/user/cardshare.service" {
		t.Errorf("unit path %s", p.Path)
	}
}

// A plist reader just good enough to get ProgramArguments back.
func plistArgs(t *testing.T, b []byte) []string {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var (
		args    []string
		lastKey string
		inArray bool
		text    strings.Builder
	)
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return args
			}
			t.Fatalf("plist is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			text.Reset()
			if tok.Name.Local == "array" && lastKey == "ProgramArguments" {
				inArray = true
			}
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			switch tok.Name.Local {
			case "key":
				lastKey = text.String()
			case "array":
				inArray = false
			case "string":
				if inArray {
					args = append(args, text.String())
				}
			}
		}
	}
}

// Paths with XML's special characters come back unchanged.
func TestLaunchAgentEscaping(t *testing.T) {
	s := Spec{Binary: "/Applications/Tools & <Co>/cardshare", UID: 501, Args: []string{"up", "--config", `/Users/me/"odd" 'dir'/c.yaml`}}
	b, err := LaunchAgent(s, "/Users/me/Library/Logs/cardshare/up.log")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plistArgs(t, b), append([]string{s.Binary}, s.Args...); !slices.Equal(got, want) {
		t.Errorf("ProgramArguments %q, want %q", got, want)
	}
}

type taskDoc struct {
	UserIDs   []string `xml:"Triggers>LogonTrigger>UserId"`
	Principal string   `xml:"Principals>Principal>UserId"`
	Command   string   `xml:"Actions>Exec>Command"`
	Arguments string   `xml:"Actions>Exec>Arguments"`
	Limit     string   `xml:"Settings>ExecutionTimeLimit"`
}

func TestTaskXMLRoundTrip(t *testing.T) {
	s := Spec{Binary: `C:\Program Files\cardshare\cardshare.exe`, WindowsUser: `S-1-5-21-1-2-3-1001`,
		Args: []string{"up", "--config", `C:\Users\me\My <VMs> & "cards"\config.yaml`, "", `ends\`, `a\\"b`}}
	x, err := TaskXML(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc taskDoc
	if err := xml.Unmarshal([]byte(strings.Replace(x, `encoding="UTF-16"`, `encoding="UTF-8"`, 1)), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Command != `"C:\Program Files\cardshare\cardshare.exe"` || doc.Principal != s.WindowsUser || !slices.Equal(doc.UserIDs, []string{s.WindowsUser}) || doc.Limit != "PT0S" {
		t.Errorf("task %+v", doc)
	}
	if got := splitWindowsArgs(doc.Arguments); !slices.Equal(got, s.Args) {
		t.Errorf("arguments %s parse as %q, want %q", doc.Arguments, got, s.Args)
	}
}

// splitWindowsArgs parses a command line the way CommandLineToArgvW and
// Go's runtime do for arguments after the program name.
func splitWindowsArgs(cmd string) []string {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote bool
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case (c == ' ' || c == '\t') && !quote:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		case c == '\\':
			n := 0
			for i < len(cmd) && cmd[i] == '\\' {
				n++
				i++
			}
			if i < len(cmd) && cmd[i] == '"' {
				cur.WriteString(strings.Repeat(`\`, n/2))
				if n%2 == 1 {
					cur.WriteByte('"')
				} else {
					quote = !quote
				}
			} else {
				cur.WriteString(strings.Repeat(`\`, n))
				i--
			}
			inArg = true
		case c == '"':
			if quote && i+1 < len(cmd) && cmd[i+1] == '"' {
				cur.WriteByte('"')
				i++
			} else {
				quote = !quote
			}
			inArg = true
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

func FuzzWindowsQuoteArg(f *testing.F) {
	for _, s := range []string{"", "a b", `a"b`, `a\`, `a\\"`, `\\server\share\x`, `"`, `\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, "\x00\r\n") {
			return
		}
		q := windowsQuoteArg(s)
		if got := splitWindowsArgs("x " + q + " y"); !slices.Equal(got, []string{"x", s, "y"}) {
			t.Errorf("%q quoted as %s parses as %q", s, q, got)
		}
	})
}

// No path or argument can inject a line or an XML token.
func TestUnsafe(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows"} {
		base := map[string]Spec{"linux": linuxSpec, "darwin": macSpec, "windows": winSpec}[goos]
		env := map[string]Env{"linux": {Home: "/home/me"}, "darwin": macEnv, "windows": winEnv}[goos]
		for _, bad := range []string{"x\nExecStartPre=/bin/sh -c evil", "x\r", "x\x00", "x\x1b[2J", "x\t", "x\x7f"} {
			s := base
			s.Args = []string{"up", "--config", bad}
			if _, err := PlanFor(goos, s, env); !errors.Is(err, ErrUnsafe) {
				t.Errorf("%s: argument %q: err = %v, want ErrUnsafe", goos, bad, err)
			}
			s = base
			s.Binary += bad
			if _, err := PlanFor(goos, s, env); !errors.Is(err, ErrUnsafe) {
				t.Errorf("%s: binary %q: err = %v, want ErrUnsafe", goos, bad, err)
			}
		}
		s := base
		s.Binary = "cardshare"
		if _, err := PlanFor(goos, s, env); err == nil {
			t.Errorf("%s: relative program path accepted", goos)
		}
	}
	s := winSpec
	s.Args = []string{"up", "--config", `C:\%USERNAME%\c.yaml`}
	if _, err := PlanFor("windows", s, winEnv); !errors.Is(err, ErrUnsafe) {
		t.Errorf("%%VAR%% in a task argument: %v", err)
	}
	s = macSpec
	s.UID = 0
	if _, err := PlanFor("darwin", s, macEnv); err == nil {
		t.Error("darwin: no UID accepted")
	}
	s = winSpec
	s.WindowsUser = ""
	if _, err := PlanFor("windows", s, winEnv); err == nil {
		t.Error("windows: no user accepted")
	}
}
