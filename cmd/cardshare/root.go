package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// globals are the flags every subcommand shares.
type globals struct {
	verbose   bool
	logFormat string
	stdin     io.Reader
	stderr    io.Writer
}

func (g *globals) logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if g.verbose {
		opts.Level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(g.stderr, opts)
	if g.logFormat == "json" {
		h = slog.NewJSONHandler(g.stderr, opts)
	}
	if checkLog != nil {
		h = checkLog(h)
	}
	return slog.New(h)
}

// checkLog, when set (by the tests), wraps every log handler: it checks
// that no line repeats a key.
var checkLog func(slog.Handler) slog.Handler

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "cardshare",
		Short: "Share the host's smart card readers with virtual machines",
		Long: `cardshare lets programs in guest virtual machines use the smart card readers of
the host (YubiKeys, eID cards, PIV tokens) without USB passthrough.

It forwards the host pcscd socket into each guest over SSH, keeps the forward
up across sleep, guest reboots and network drops, and checks that the guest's
libpcsclite and the host's pcscd speak compatible protocol versions.

In the guest, point programs at the forwarded socket:

  export PCSCLITE_CSOCK_NAME=<the path cardshare prints>`,
		Example: `  # forward into one guest (an ssh_config alias, or [user@]host[:port])
  cardshare expose myvm

  # several guests from one process
  cardshare expose vm1 vm2 dev@10.0.0.7:2222`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what `cardshare version` prints first.
		Version: versionLine(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug events (connections, byte counts; never card data)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.AddCommand(newExposeCmd(g), newVersionCmd(), newUpCmd(g), newStatusCmd(), newConfigCmd(g), newServiceCmd(g), newGuestCmd(g), newResolveCmd(g), newDoctorCmd(g), newRelayCmd(g))
	return root
}

// run executes the command line and returns the exit code. Errors are
// printed here and only here, each with a hint when one is known.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	printError(stderr, err)
	return 1
}

func printError(w io.Writer, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		fmt.Fprintf(w, "cardshare: error: %s\n", e.Error())
		if h := hint(e); h != "" {
			fmt.Fprintf(w, "cardshare: hint: %s\n", h)
		}
	}
}

// usageError marks errors in the command line itself.
type usageError struct{ msg, hint string }

func (e *usageError) Error() string { return e.msg }

func hintOf(err error) (string, bool) {
	var u *usageError
	if errors.As(err, &u) && u.hint != "" {
		return u.hint, true
	}
	return "", false
}
