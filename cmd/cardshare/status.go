package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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
control sockets how each guest is doing: state (connecting, up, backing-off
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
		printStatus(stdout, s, time.Now())
	}
	return nil
}

// printStatus writes s as a table for people.
func printStatus(w io.Writer, s *control.StatusV1, now time.Time) {
	relay := s.Mode == control.ModeRelay
	if relay {
		fmt.Fprintf(w, "cardshare relay serve, pid %d, running for %s\n", s.PID, age(now, s.Started))
		fmt.Fprintf(w, "state %s, listening on %s\n", s.Config, orDash(s.Listen))
	} else {
		fmt.Fprintf(w, "cardshare up, pid %d, running for %s\n", s.PID, age(now, s.Started))
		fmt.Fprintf(w, "config %s, loaded %s ago\n", s.Config, age(now, s.Loaded))
	}
	fmt.Fprintf(w, "host pcscd %s: protocol %s (%s)\n", s.Host.PCSCDSocket, s.Host.Protocol, s.Host.Releases)
	if s.ReloadError != "" {
		fmt.Fprintf(w, "last reload: %s\n", s.ReloadError)
	}
	if len(s.Guests) == 0 {
		if relay {
			fmt.Fprintln(w, "\nno guests paired: `cardshare relay pair NAME`")
		} else {
			fmt.Fprintln(w, "\nno guests configured")
		}
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	last := "GUEST SOCKET"
	if relay {
		last = "GUEST ADDRESS"
	}
	fmt.Fprintf(tw, "GUEST\tSTATE\tSINCE\tCONNECTIONS\tUP/DOWN\tPROTOCOL\t%s\n", last)
	for _, g := range s.Guests {
		since := age(now, g.Since)
		if g.RetryAt != nil {
			since += ", retry in " + until(now, *g.RetryAt)
		}
		proto := orDash(g.GuestProtocol) + " → " + orDash(g.HostProtocol)
		where := g.Socket
		if relay {
			where = g.Address
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d open, %d total\t%s / %s\t%s\t%s\n", g.Name, g.State, since,
			g.OpenConnections, g.Connections, sizeSI(g.BytesUp), sizeSI(g.BytesDown), proto, orDash(where))
	}
	tw.Flush()
	first := true
	for _, g := range s.Guests {
		if p := cmdutil.ReaderPolicyText(g.Readers, g.Control == "deny", g.Audit); p != "" {
			if first {
				fmt.Fprintln(w)
				first = false
			}
			fmt.Fprintf(w, "%s: %s\n", g.Name, p)
		}
	}
	first = true
	for _, g := range s.Guests {
		if g.LastError == "" || g.State == "up" {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		fmt.Fprintf(w, "%s: %s\n", g.Name, g.LastError)
	}
}

// age is how long ago t was, to the second.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func until(now, t time.Time) string {
	return roughly(t.Sub(now)).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sizeSI formats n with SI prefixes: 0 B, 999 B, 1.5 kB, 12 MB.
func sizeSI(n uint64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"kB", "MB", "GB", "TB"} {
		f /= 1000
		if f < 999.5 || unit == "TB" {
			if f < 9.95 {
				return fmt.Sprintf("%.1f %s", f, unit)
			}
			return fmt.Sprintf("%.0f %s", f, unit)
		}
	}
	return ""
}
