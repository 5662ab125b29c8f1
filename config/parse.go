package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a configuration is a few kilobytes.
const maxFileSize = 1 << 20

// The schema of the file. Its yaml tags are the only list of valid keys:
// the key check walks these types, and the strict decode fills them. Every
// value is kept as a node, with its line, for the conversions below.
type fileSchema struct {
	Version yaml.Node     `yaml:"version"`
	Host    hostSchema    `yaml:"host"`
	Guests  []guestSchema `yaml:"guests"`
}

type hostSchema struct {
	Backend     yaml.Node `yaml:"backend"`
	PCSCDSocket yaml.Node `yaml:"pcscd_socket"`
	Keepalive   yaml.Node `yaml:"keepalive"`
	LogLevel    yaml.Node `yaml:"log_level"`
	LogFormat   yaml.Node `yaml:"log_format"`
	SSHConfig   yaml.Node `yaml:"ssh_config"`
	AcceptNew   yaml.Node `yaml:"accept_new"`
	MaxGuest    yaml.Node `yaml:"max_guest_conns"`
	MaxConns    yaml.Node `yaml:"max_conns"`
}

type guestSchema struct {
	Name        yaml.Node  `yaml:"name"`
	Destination yaml.Node  `yaml:"destination"`
	VM          yaml.Node  `yaml:"vm"`
	Socket      yaml.Node  `yaml:"socket"`
	SetupGuest  yaml.Node  `yaml:"setup_guest"`
	Readers     yaml.Node  `yaml:"readers"`
	Control     yaml.Node  `yaml:"control"`
	Audit       yaml.Node  `yaml:"audit"`
	CCID        ccidSchema `yaml:"ccid"`
}

// ccidSchema is a guest's ccid: mapping (QEMU's emulated USB CCID reader).
type ccidSchema struct {
	Reader    yaml.Node `yaml:"reader"`
	Chardev   yaml.Node `yaml:"chardev"`
	Listen    yaml.Node `yaml:"listen"`
	Exclusive yaml.Node `yaml:"exclusive"`
	T1        yaml.Node `yaml:"t1"`
}

var (
	nodeType  = reflect.TypeFor[yaml.Node]()
	hostType  = reflect.TypeFor[hostSchema]()
	guestType = reflect.TypeFor[guestSchema]()
)

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: "file is larger than 1 MiB", Hint: "is this the right file? a configuration is a few kilobytes"}
	}
	return Parse(path, data)
}

// Parse reads a configuration from data, which came from file (used in
// errors only), and validates it. An empty file is the Default
// configuration. Errors are *Error values joined with errors.Join, all that
// were found, in file order.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file, data: data, lines: map[string]int{}}
	c := Default()
	c.File = file
	root, err := p.document()
	if err != nil {
		return nil, err
	}
	if root == nil {
		return c, nil
	}
	p.checkKeys(root, reflect.TypeFor[fileSchema](), "", "")
	if len(p.errs) > 0 {
		return nil, p.joined()
	}
	// The key check has vetted every key, so this strict decode cannot
	// meet an unknown one; KnownFields guards against the two drifting.
	var s fileSchema
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Hint: "please report this file: the key check missed what the decoder refused"}
	}
	p.convert(&s, c)
	if len(p.errs) > 0 {
		return nil, p.joined()
	}
	c.lines = p.lines
	if err := c.Validate(); err != nil {
		p.errs = unjoin(err)
		return nil, p.joined()
	}
	return c, nil
}

// joined returns the errors found, in file order.
func (p *parser) joined() error {
	sort.SliceStable(p.errs, func(i, j int) bool {
		return p.errs[i].(*Error).Line < p.errs[j].(*Error).Line
	})
	return errors.Join(p.errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

type parser struct {
	file  string
	data  []byte
	lines map[string]int
	errs  []error
}

func (p *parser) fail(line int, hint, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// document parses data into its root node: nil for an empty file.
func (p *parser) document() (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(p.data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{File: p.file, Line: next.Line, Msg: "a second YAML document starts here",
			Hint: "cardshare reads one document: remove the `---` line and merge the two"}
	case !errors.Is(err, io.EOF):
		return nil, p.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// syntaxError turns a YAML parser error ("yaml: line 3: did not find
// expected key") into an *Error at that line.
func (p *parser) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	hint := "this is not valid YAML: check the indentation and the quoting on and around this line"
	if bytes.Contains(p.data, []byte("\t")) {
		hint = "YAML does not allow tabs for indentation: indent with spaces"
	}
	return &Error{File: p.file, Line: line, Msg: "invalid YAML: " + msg, Hint: hint}
}

// checkKeys walks node against the schema type t: a struct is a mapping
// whose keys are t's yaml tags, a slice is a list of its element, a
// yaml.Node is any value. It records each key's line under its path.
func (p *parser) checkKeys(n *yaml.Node, t reflect.Type, path, section string) {
	n = deref(n)
	if isNull(n) || t == nodeType {
		return
	}
	switch t.Kind() {
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.fail(n.Line, "write guests as a list, one `- name: ...` entry per guest", "%s must be a list, not %s", section, describe(n))
			return
		}
		for i, item := range n.Content {
			p.lines[path+"."+strconv.Itoa(i)] = deref(item).Line
			p.checkKeys(item, t.Elem(), path+"."+strconv.Itoa(i), "a guest entry")
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			what := "the file"
			if section != "" {
				what = section
			}
			p.fail(n.Line, "write `key: value` lines, indented under it", "%s must be a mapping of keys to values, not %s", what, describe(n))
			return
		}
		fields := schemaFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := deref(n.Content[i]), n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				p.fail(k.Line, "keys are plain words such as `keepalive`", "a key must be a word, not %s", describe(k))
				continue
			}
			if first, dup := seen[k.Value]; dup {
				p.fail(k.Line, "keep one of them", "%s is set twice (first at line %d)", k.Value, first)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				p.fail(k.Line, unknownKeyHint(k.Value, t), "unknown key %q in %s", k.Value, sectionName(section))
				continue
			}
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			p.lines[sub] = k.Line
			p.checkKeys(v, f.Type, sub, k.Value)
		}
	}
}

func sectionName(section string) string {
	switch section {
	case "":
		return "the top level"
	case "host":
		return "host"
	}
	return section
}

// schemaFields maps the yaml keys of schema struct t to its fields.
func schemaFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		m[f.Tag.Get("yaml")] = f
	}
	return m
}

// unknownKeyHint suggests the key that was meant: a near spelling in the
// same place, or the place where the key belongs.
func unknownKeyHint(k string, t reflect.Type) string {
	fields := schemaFields(t)
	var names []string
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(strings.ReplaceAll(k, "-", "_")), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	switch {
	case t != hostType && hasField(hostType, k):
		return fmt.Sprintf("%s is a host option: move it under `host:`", k)
	case t != guestType && hasField(guestType, k):
		return fmt.Sprintf("%s is a per-guest option: move it into an entry of `guests:`", k)
	}
	return "the keys here are " + strings.Join(names, ", ")
}

func hasField(t reflect.Type, k string) bool {
	_, ok := schemaFields(t)[k]
	return ok
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// convert fills c from the decoded schema.
func (p *parser) convert(s *fileSchema, c *Config) {
	if n, ok := p.scalar(&s.Version, "version", "write `version: 1`"); ok {
		v, err := strconv.Atoi(n.Value)
		if err != nil || n.Tag != "!!int" {
			p.fail(n.Line, "write `version: 1`", "version %q is not a number", n.Value)
		} else {
			c.Version = v
		}
	}
	h := &s.Host
	p.str(&h.Backend, "backend", &c.Host.Backend)
	p.str(&h.PCSCDSocket, "pcscd_socket", &c.Host.PCSCDSocket)
	c.Host.PCSCDSocket = expandHome(c.Host.PCSCDSocket)
	p.duration(&h.Keepalive, "keepalive", &c.Host.Keepalive)
	p.str(&h.LogLevel, "log_level", &c.Host.LogLevel)
	p.str(&h.LogFormat, "log_format", &c.Host.LogFormat)
	p.str(&h.SSHConfig, "ssh_config", &c.Host.SSHConfig)
	c.Host.SSHConfig = expandHome(c.Host.SSHConfig)
	p.boolean(&h.AcceptNew, "accept_new", &c.Host.AcceptNew)
	p.integer(&h.MaxGuest, "max_guest_conns", &c.Host.MaxGuestConns)
	p.integer(&h.MaxConns, "max_conns", &c.Host.MaxConns)

	for i := range s.Guests {
		gs := &s.Guests[i]
		g := Guest{Line: p.lines[key(i, "")]}
		p.str(&gs.Name, "name", &g.Name)
		p.str(&gs.Destination, "destination", &g.Destination)
		p.str(&gs.VM, "vm", &g.VM)
		p.str(&gs.Socket, "socket", &g.Socket)
		p.boolean(&gs.SetupGuest, "setup_guest", &g.SetupGuest)
		g.Readers = p.strList(&gs.Readers, "readers", key(i, "readers"))
		p.str(&gs.Control, "control", &g.Control)
		p.boolean(&gs.Audit, "audit", &g.Audit)
		if cs := &gs.CCID; p.lines[key(i, "ccid")] != 0 {
			g.CCID = &CCID{}
			p.str(&cs.Reader, "reader", &g.CCID.Reader)
			if n := deref(&cs.Chardev); n.Kind == yaml.ScalarNode && !isNull(n) {
				g.CCID.Chardevs = []string{n.Value}
				p.lines[key(i, "ccid.chardev.0")] = n.Line
			} else {
				g.CCID.Chardevs = p.strList(&cs.Chardev, "chardev", key(i, "ccid.chardev"))
			}
			p.boolean(&cs.Listen, "listen", &g.CCID.Listen)
			p.boolean(&cs.Exclusive, "exclusive", &g.CCID.Exclusive)
			p.boolean(&cs.T1, "t1", &g.CCID.T1)
		}
		if g.Name == "" {
			g.Name = g.Target()
		}
		c.Guests = append(c.Guests, g)
	}
}

// scalar returns the scalar value of n, false when n is absent or null.
func (p *parser) scalar(n *yaml.Node, k, hint string) (*yaml.Node, bool) {
	n = deref(n)
	if n.Kind == 0 || isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		p.fail(n.Line, hint, "%s must be a single value, not %s", k, describe(n))
		return nil, false
	}
	return n, true
}

func (p *parser) str(n *yaml.Node, k string, dst *string) {
	if n, ok := p.scalar(n, k, "write `"+k+": value` on one line"); ok {
		*dst = n.Value
	}
}

func (p *parser) boolean(n *yaml.Node, k string, dst *bool) {
	n, ok := p.scalar(n, k, "write `"+k+": true` or `"+k+": false`")
	if !ok {
		return
	}
	if n.Tag != "!!bool" || n.Decode(dst) != nil {
		p.fail(n.Line, "write true or false", "%s: %q is not true or false", k, n.Value)
	}
}

func (p *parser) integer(n *yaml.Node, k string, dst *int) {
	n, ok := p.scalar(n, k, "write a whole number such as `"+k+": 32`")
	if !ok {
		return
	}
	if n.Tag != "!!int" || n.Decode(dst) != nil {
		p.fail(n.Line, "write a whole number such as 32", "%s: %q is not a whole number", k, n.Value)
	}
}

func (p *parser) duration(n *yaml.Node, k string, dst *time.Duration) {
	n, ok := p.scalar(n, k, "write a duration such as 5s")
	if !ok {
		return
	}
	if n.Tag == "!!int" {
		p.fail(n.Line, "add a unit: "+n.Value+"s means "+n.Value+" seconds", "%s: %s has no unit", k, n.Value)
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.fail(n.Line, "write a number with a unit, such as 5s, 500ms or 1m30s", "%s: %q is not a duration", k, n.Value)
		return
	}
	*dst = d
}

// strList reads a list of single values, recording each item's line under
// lineKey.N.
func (p *parser) strList(n *yaml.Node, k, lineKey string) []string {
	n = deref(n)
	if n.Kind == 0 || isNull(n) {
		return nil
	}
	hint := fmt.Sprintf("write a list: `%s: [\"first\", \"second\"]`", k)
	if n.Kind != yaml.SequenceNode {
		p.fail(n.Line, hint, "%s must be a list, not %s", k, describe(n))
		return nil
	}
	var out []string
	for i, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.ScalarNode || isNull(item) {
			p.fail(item.Line, hint, "each entry of %s must be a single value, not %s", k, describe(item))
			continue
		}
		p.lines[lineKey+"."+strconv.Itoa(i)] = item.Line
		out = append(out, item.Value)
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// describe names what a node is, for errors.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "empty"
		}
		return strconv.Quote(n.Value)
	}
	return "this"
}

// expandHome expands a leading ~/ to the home directory, as for paths on
// the host; it leaves the path alone when there is no home directory.
func expandHome(p string) string {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, rest)
}
