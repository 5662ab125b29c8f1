package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

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
			v := version
			if v == "" {
				v = "(devel)"
				if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
					v = bi.Main.Version
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cardshare %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintln(out, "pcsc-lite protocols: 4.4 (pcsc-lite 1.8.24–2.2.3), 4.5 (2.3.0–2.4.1), 4.6 (2.5.x)")
			fmt.Fprintln(out, backendLine())
			return nil
		},
	}
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
