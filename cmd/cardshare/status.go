package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/control"
)

type statusOptions struct {
	json    bool
	control string
}

func newStatusCmd() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the guests of the running `cardshare up` and `relay serve`",
		Long: `status asks the running ` + "`cardshare up`" + ` and ` + "`cardshare relay serve`" + ` over their
control sockets (and every running ` + "`cardshare qemu attach`" + `) how each guest is doing: state (connecting, up, backing-off
with the next retry, failed; for relay guests also disconnected and revoked),
the guest socket path or the relay guest's address, since when, open and
total client connections, bytes relayed, the guest's and the host's pcsc-lite
protocol versions, and the last error.

--json prints a stable document for scripts: {"version": 1, "mode": "up", ...},
with every field always present; see the README for the schema. New fields
may appear within version 1; a field changes meaning or goes away only with a
new version. When both ` + "`up`" + ` and ` + "`relay serve`" + ` run, --json prints both documents,
one after the other (jq reads them as a stream).`,
		Example: `  cardshare status
  cardshare status --json | jq -r '.guests[] | select(.state != "up") | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print the status document as JSON (schema version 1)")
	f.StringVar(&o.control, "control-socket", "", "control socket `path` of the one process to ask (default: both $XDG_RUNTIME_DIR/cardshare/control.sock of `up` and relay.sock of `relay serve`)")
	return cmd
}

func runStatus(ctx context.Context, o *statusOptions, stdout io.Writer) error {
	paths := []string{o.control}
	if o.control == "" {
		up, err := control.DefaultSocket()
		if err != nil {
			return err
		}
		relay, err := control.DefaultRelaySocket()
		if err != nil {
			return err
		}
		paths = []string{up, relay}
		qemu, err := control.QEMUSockets() // `cardshare qemu attach`, one per VM
		if err != nil {
			return err
		}
		paths = append(paths, qemu...)
	}
	var docs []*control.StatusV1
	var notRunning error
	for _, p := range paths {
		s, err := control.Query(ctx, p)
		if errors.Is(err, control.ErrNotRunning) && len(paths) > 1 {
			notRunning = err
			continue
		}
		if err != nil {
			return err
		}
		docs = append(docs, s)
	}
	if len(docs) == 0 {
		return cmdutil.WithHint(fmt.Errorf("%w: nothing serves %s", control.ErrNotRunning, strings.Join(paths, " or ")), cmdutil.Hint(notRunning))
	}
	for i, s := range docs {
		if o.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(s); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		s.WriteText(stdout, time.Now())
	}
	return nil
}
