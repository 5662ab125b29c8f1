package logtest

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	var out bytes.Buffer
	var dups []string
	log := slog.New(Handler(slog.NewJSONHandler(&out, nil), func(msg, key string) { dups = append(dups, msg+":"+key) }))
	g := log.With("guest", "myvm")
	g.Info("fine", "guest_lib", "pcsc-lite 1.9.9", "addr", "[127.0.0.1]:2222")
	g.Info("twice", "guest", "pcsc-lite 1.9.9")
	log.Info("own twice", "addr", "a", "addr", "b")
	log.Info("builtin", "msg", "x")
	log.WithGroup("g").With("a", 1).Info("grouped", "a", 2)
	log.Info("two groups", slog.Group("x", "a", 1), slog.Group("y", "a", 1))
	want := []string{"twice:guest", "own twice:addr", "builtin:msg", "grouped:g.a"}
	if !slices.Equal(dups, want) {
		t.Errorf("duplicates %q, want %q", dups, want)
	}
	// The JSON check finds the same lines in what the handler wrote.
	bad := CheckJSON(&out)
	if len(bad) != 4 {
		t.Fatalf("CheckJSON: %d bad lines, want 4: %q", len(bad), bad)
	}
	for i, k := range []string{`"guest"`, `"addr"`, `"msg"`, `"g.a"`} {
		if !strings.Contains(bad[i], "duplicate key "+k) {
			t.Errorf("line %d: %s, want duplicate key %s", i, bad[i], k)
		}
	}
	if bad := CheckJSON(strings.NewReader("text line\n{\"a\":{\"b\":1,\"c\":[{\"d\":1,\"d\":2}]}}\n")); len(bad) != 1 || !strings.Contains(bad[0], `"a.c.d"`) {
		t.Errorf("nested: %q", bad)
	}
}
