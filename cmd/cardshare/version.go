package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/internal/hostpcsc"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cardshare's version and the pcsc-lite protocols it knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, versionLine())
			fmt.Fprintln(out, "pcsc-lite protocols: 4.4 (pcsc-lite 1.8.24–2.2.3), 4.5 (2.3.0–2.4.1), 4.6 (2.5.x)")
			fmt.Fprintln(out, backendLine())
			return nil
		},
	}
}

// versionLine is what `cardshare --version` prints.
func versionLine() string {
	bi, _ := debug.ReadBuildInfo()
	return fmt.Sprintf("cardshare %s (%s, %s/%s)", buildVersion(version, bi), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion is the version that -ldflags set, else the module version
// that `go install ...@v1.2.3` (or, since Go 1.24, a build in a checkout)
// stamps, else the VCS revision of a build from a checkout ("devel
// 1a2b3c4d5e6f", "+dirty" when it had changes), else "(devel)".
func buildVersion(ldflag string, bi *debug.BuildInfo) string {
	if ldflag != "" {
		return ldflag
	}
	if bi == nil {
		return "(devel)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "+dirty"
	}
	return strings.TrimSpace("devel " + rev)
}

// backendLine says which host backends this binary has on this system:
// the native one only when the system's PC/SC library loads.
func backendLine() string {
	native := "native (unavailable: "
	if lib, err := hostpcsc.NativeLibrary(); err != nil {
		native += err.Error() + ")"
	} else {
		native = "native (" + lib + ")"
	}
	auto := "auto uses the pcscd socket when it answers, else native"
	if runtime.GOOS == "windows" {
		auto = "auto is native (Windows has no pcscd)"
	}
	return "host backends: socket (pcscd), " + native + "; " + auto
}
