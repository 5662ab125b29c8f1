package logtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Handler wraps h and calls dup with the record's message and the key for
// every key that a record carries twice (its own attributes, those added
// with WithAttrs, and the built-in time, level and msg), groups qualifying
// keys with their names as the JSON handler nests them.
func Handler(h slog.Handler, dup func(msg, key string)) slog.Handler {
	return &handler{h: h, dup: dup}
}

type handler struct {
	h      slog.Handler
	dup    func(msg, key string)
	prefix string   // the open groups, "a.b."
	keys   []string // keys added with WithAttrs, qualified
}

func (d *handler) Enabled(ctx context.Context, l slog.Level) bool { return d.h.Enabled(ctx, l) }

func (d *handler) Handle(ctx context.Context, r slog.Record) error {
	seen := map[string]bool{slog.TimeKey: true, slog.LevelKey: true, slog.MessageKey: true}
	add := func(k string) {
		if seen[k] {
			d.dup(r.Message, k)
		}
		seen[k] = true
	}
	for _, k := range d.keys {
		add(k)
	}
	r.Attrs(func(a slog.Attr) bool {
		walk(d.prefix, a, add)
		return true
	})
	return d.h.Handle(ctx, r)
}

func walk(prefix string, a slog.Attr, add func(string)) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			walk(p, g, add)
		}
		return
	}
	if a.Key != "" {
		add(prefix + a.Key)
	}
}

func (d *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *d
	n.h = d.h.WithAttrs(as)
	n.keys = append([]string(nil), d.keys...)
	for _, a := range as {
		walk(d.prefix, a, func(k string) { n.keys = append(n.keys, k) })
	}
	return &n
}

func (d *handler) WithGroup(name string) slog.Handler {
	n := *d
	n.h = d.h.WithGroup(name)
	n.prefix = d.prefix + name + "."
	return &n
}

// CheckJSON reads the lines of r; every line that starts with '{' must be
// one JSON object whose keys, at every level, appear once. It returns a
// description of each offending line.
func CheckJSON(r io.Reader) []string {
	var bad []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := object(dec, ""); err != nil {
			bad = append(bad, fmt.Sprintf("%v: %s", err, line))
		}
	}
	return bad
}

// object reads one JSON object whose '{' is next in dec.
func object(dec *json.Decoder, path string) error {
	if t, err := dec.Token(); err != nil {
		return err
	} else if t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k := t.(string)
		if seen[k] {
			return fmt.Errorf("duplicate key %q", path+k)
		}
		seen[k] = true
		if err := value(dec, path+k+"."); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func value(dec *json.Decoder, path string) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	s := strings.TrimSpace(string(raw))
	switch {
	case strings.HasPrefix(s, "{"):
		return object(json.NewDecoder(strings.NewReader(s)), path)
	case strings.HasPrefix(s, "["):
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return err
		}
		for _, e := range elems {
			if err := value(json.NewDecoder(bytes.NewReader(e)), path); err != nil {
				return err
			}
		}
	}
	return nil
}

// New returns a logger that writes text lines at level and above to w and
// fails t on every record that repeats a key.
func New(t testing.TB, w io.Writer, level slog.Level) *slog.Logger {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(Handler(h, func(msg, key string) {
		t.Errorf("log line %q has the key %q twice", msg, key)
	}))
}

// Buffer is a log sink that several goroutines may write while the test
// reads it: a bytes.Buffer behind a mutex.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
