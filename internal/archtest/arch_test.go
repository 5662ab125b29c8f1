package archtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cardshare/cardshare"

// Size limits for non-test code (STYLE.md practice 1, issue 12).
const (
	maxFileLines    = 600
	maxPackageLines = 1500
)

// sizeExempt are test harnesses, not product code: they may be as large as
// the tests they serve need.
var sizeExempt = []string{
	"internal/testenv",
	"internal/pcsc/pcsctest",
	"internal/bench",
	"internal/matrix",
}

// transports are the packages that carry connections. The core and the
// protocol must not depend on any of them, and config must not either.
var transports = []string{
	"golang.org/x/crypto/ssh",
	"github.com/hashicorp/yamux",
	"github.com/mdlayher/vsock",
	"crypto/tls",
}

// noTransport lists the packages that must import no transport (nor
// forward or relay): the shared core and what it stands on.
var noTransport = []string{
	"config",
	"internal/accept",
	"internal/backoff",
	"internal/bridge",
	"internal/hostpcsc",
	"internal/neterr",
	"internal/pcsc",
	"internal/rawio",
	"internal/unixsock",
}

// allowed are known violations, each with the reason it is still there;
// none today. An entry that no longer matches a violation fails the test,
// so the list cannot go stale.
var allowed = map[string]string{}

// forbidden lists, for some packages (and everything under them), module
// packages and transports they must not depend on, beyond the rules every
// package follows (see violations).
var forbidden = map[string][]string{
	"internal/pcsc/proxy": {"internal/bridge", "internal/hostpcsc"},
	"relay/mux":           {"internal/pcsc", "internal/bridge", "relay/trust", "crypto/tls"},
	"relay/trust":         {"github.com/hashicorp/yamux", "github.com/mdlayher/vsock", "internal/bridge", "relay/mux"},
}

// pkg is what `go list -json` says of a package, as far as the rules need.
type pkg struct {
	ImportPath     string
	Dir            string
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string // other systems' files count too
	Deps           []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,CgoFiles,IgnoredGoFiles,Deps", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// rel is p's path inside the module: "relay/trust", "cmd/cardshare".
func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether r is dir or inside it.
func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }

// violations returns every broken rule, as keys of allowed, with details.
func violations(t *testing.T, pkgs []pkg) map[string]string {
	out := make(map[string]string)
	for _, p := range pkgs {
		r, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		var deps []string // the module's own packages and the transports p depends on
		for _, d := range p.Deps {
			if dr, ok := rel(d); ok {
				deps = append(deps, dr)
			} else if slices.Contains(transports, d) {
				deps = append(deps, d)
			}
		}
		bad := func(target, why string) {
			out[fmt.Sprintf("import %s -> %s", r, target)] = why
		}
		for _, d := range deps {
			switch {
			case under(r, "internal") && (under(d, "cmd") || under(d, "forward") || under(d, "relay") || d == "config"):
				bad(d, "nothing under internal/ imports cmd/, forward, relay or config")
			case under(r, "forward") && under(d, "relay"):
				bad(d, "forward and relay never import each other")
			case under(r, "relay") && under(d, "forward"):
				bad(d, "forward and relay never import each other")
			}
			for n, deny := range forbidden {
				if under(r, n) && slices.ContainsFunc(deny, func(x string) bool { return under(d, x) }) {
					bad(d, n+" must not import "+d)
				}
			}
			for _, n := range noTransport {
				if under(r, n) && (slices.Contains(transports, d) || under(d, "forward") || under(d, "relay")) {
					bad(d, n+" imports no transport")
				}
			}
		}
		if slices.ContainsFunc(sizeExempt, func(e string) bool { return under(r, e) }) {
			continue
		}
		total := 0
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.IgnoredGoFiles) {
			if strings.HasSuffix(f, "_test.go") || !strings.HasSuffix(f, ".go") {
				continue
			}
			n := countLines(t, filepath.Join(p.Dir, f))
			total += n
			if n > maxFileLines {
				out["file "+filepath.ToSlash(filepath.Join(r, f))] = fmt.Sprintf("%d lines, over %d", n, maxFileLines)
			}
		}
		if total > maxPackageLines {
			out["package "+r] = fmt.Sprintf("%d non-test lines, over %d", total, maxPackageLines)
		}
	}
	return out
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		n++
	}
	if err := s.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestArchitecture checks the import rules and the size limits, and reports
// every violation at once.
func TestArchitecture(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	got := violations(t, listPackages(t))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		if _, ok := allowed[k]; ok {
			t.Logf("allowed for now: %s (%s)", k, got[k])
			continue
		}
		t.Errorf("%s: %s", k, got[k])
	}
	for k := range allowed {
		if _, ok := got[k]; !ok {
			t.Errorf("allowlist entry %q matches no violation any more: remove it", k)
		}
	}
}

// TestViolationsFound makes sure the check can fail: a package under
// internal/ that imports relay, a file and a package over the limits.
func TestViolationsFound(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long.go")
	if err := os.WriteFile(long, bytes.Repeat([]byte("//\n"), maxPackageLines+1), 0o600); err != nil {
		t.Fatal(err)
	}
	got := violations(t, []pkg{
		{ImportPath: module + "/internal/x", Dir: dir, GoFiles: []string{"long.go"}, Deps: []string{module + "/relay", "crypto/tls"}},
		{ImportPath: module + "/config", Dir: dir, Deps: []string{"github.com/hashicorp/yamux"}},
		{ImportPath: module + "/relay", Dir: dir, Deps: []string{module + "/forward"}},
	})
	for _, want := range []string{
		"import internal/x -> relay",
		"import config -> github.com/hashicorp/yamux",
		"import relay -> forward",
		"file internal/x/long.go",
		"package internal/x",
	} {
		if _, ok := got[want]; !ok {
			t.Errorf("violation %q not found; got %v", want, got)
		}
	}
}
