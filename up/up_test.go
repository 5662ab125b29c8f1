package up

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/cardshare/cardshare/config"
)

// policy must give what `expose --readers/--control` gives for the same
// values: nil when the guest may use everything.
func TestPolicy(t *testing.T) {
	if p := policy(config.Guest{}); p != nil {
		t.Errorf("no readers, no control: %+v, want nil", p)
	}
	if p := policy(config.Guest{Control: "allow"}); p != nil {
		t.Errorf("control allow: %+v, want nil", p)
	}
	p := policy(config.Guest{Readers: []string{"Yubico*"}, Control: "deny"})
	if p == nil || !p.DenyControl || !slices.Equal(p.Readers, []string{"Yubico*"}) {
		t.Errorf("readers and deny: %+v", p)
	}
	if p := policy(config.Guest{Control: "deny"}); p == nil || !p.DenyControl || len(p.Readers) != 0 {
		t.Errorf("deny only: %+v", p)
	}
}

// log_level follows the file unless -v asked for debug.
func TestSetLevel(t *testing.T) {
	for _, tc := range []struct {
		level   string
		verbose bool
		want    slog.Level
	}{
		{"", false, slog.LevelInfo},
		{"debug", false, slog.LevelDebug},
		{"warn", false, slog.LevelWarn},
		{"error", false, slog.LevelError},
		{"error", true, slog.LevelDebug},
	} {
		lv := new(slog.LevelVar)
		s := New(t.Context(), Options{Level: lv, Verbose: tc.verbose})
		s.setLevel(config.Host{LogLevel: tc.level})
		if lv.Level() != tc.want {
			t.Errorf("log_level %q, verbose %v: %v, want %v", tc.level, tc.verbose, lv.Level(), tc.want)
		}
	}
}
