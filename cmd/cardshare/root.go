package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/cmd/cardshare/qemucmd"
	"github.com/cardshare/cardshare/cmd/cardshare/relaycmd"
	"github.com/cardshare/cardshare/cmd/cardshare/servicecmd"
)

func newRootCmd(g *cmdutil.Globals) *cobra.Command {
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
	root.PersistentFlags().BoolVarP(&g.Verbose, "verbose", "v", false, "log debug events (connections, byte counts; never card data)")
	root.PersistentFlags().StringVar(&g.LogFormat, "log-format", "text", "log format on stderr: text or json")
	root.AddCommand(newExposeCmd(g), newVersionCmd(), newUpCmd(g), newStatusCmd(), newConfigCmd(g), servicecmd.New(g, checkConfigFile), newGuestCmd(g), newResolveCmd(g), newDoctorCmd(g), relaycmd.New(g), qemucmd.New(g))
	return root
}

// checkConfigFile is cmdutil.CheckConfig for `service install`.
func checkConfigFile(flag string, stderr io.Writer) (string, error) {
	file, _, err := cmdutil.CheckConfig(flag, stderr)
	return file, err
}

// run executes the command line and returns the exit code. Errors are
// printed here and only here (cmdutil.PrintError), each with a hint when one is
// known.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &cmdutil.Globals{Stdin: stdin, Stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	cmdutil.PrintError(stderr, err)
	return 1
}
