package main

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b9c0d"}}
	dirty := append(rev[:2:2], debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, c := range []struct {
		ldflag string
		bi     *debug.BuildInfo
		want   string
	}{
		{"v9.9.9", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v9.9.9"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261207101010-1a2b3c4d5e6f+dirty"}}, "v0.0.0-20261207101010-1a2b3c4d5e6f+dirty"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev}, "devel 1a2b3c4d5e6f"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: dirty}, "devel 1a2b3c4d5e6f+dirty"},
		{"", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"", nil, "(devel)"},
	} {
		if got := buildVersion(c.ldflag, c.bi); got != c.want {
			t.Errorf("buildVersion(%q, %+v) = %q, want %q", c.ldflag, c.bi, got, c.want)
		}
	}
}
