package control

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes s as a table for people: what `cardshare status`
// prints without --json.
func (s *StatusV1) WriteText(w io.Writer, now time.Time) {
	relay := s.Mode == ModeRelay
	if s.Mode == ModeQEMUCCID {
		fmt.Fprintf(w, "cardshare qemu attach, pid %d, running for %s\n", s.PID, age(now, s.Started))
		fmt.Fprintf(w, "host PC/SC %s\n", orDash(s.Host.PCSCDSocket))
		writeCCID(w, s.Guests, now)
		return
	}
	if relay {
		fmt.Fprintf(w, "cardshare relay serve, pid %d, running for %s\n", s.PID, age(now, s.Started))
		fmt.Fprintf(w, "state %s, listening on %s\n", s.Config, orDash(s.Listen))
	} else {
		fmt.Fprintf(w, "cardshare up, pid %d, running for %s\n", s.PID, age(now, s.Started))
		fmt.Fprintf(w, "config %s, loaded %s ago\n", s.Config, age(now, s.Loaded))
	}
	if s.Host.Backend == "" || s.Host.Backend == "socket" {
		fmt.Fprintf(w, "host pcscd %s: protocol %s (%s)\n", s.Host.PCSCDSocket, s.Host.Protocol, s.Host.Releases)
	} else {
		fmt.Fprintf(w, "host %s, %s backend: protocol %s (%s)\n", s.Host.Source, s.Host.Backend, s.Host.Protocol, s.Host.Releases)
	}
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
	var ccid, others []GuestStatus
	for _, g := range s.Guests {
		if g.Kind == KindQEMUCCID {
			ccid = append(ccid, g)
		} else {
			others = append(others, g)
		}
	}
	writeCCID(w, ccid, now)
	if len(others) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	last := "GUEST SOCKET"
	if relay {
		last = "GUEST ADDRESS"
	}
	fmt.Fprintf(tw, "GUEST\tSTATE\tSINCE\tCONNECTIONS\tUP/DOWN\tPROTOCOL\t%s\n", last)
	for _, g := range others {
		since := age(now, g.Since)
		if g.RetryAt != nil {
			since += ", retry in " + Until(now, *g.RetryAt)
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
	for _, g := range others {
		if p := PolicyText(g.Readers, g.Control == "deny", g.Audit); p != "" {
			if first {
				fmt.Fprintln(w)
				first = false
			}
			fmt.Fprintf(w, "%s: %s\n", g.Name, p)
		}
	}
	first = true
	for _, g := range others {
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

// Until is how long until t, rounded for people: to the second, or to
// 100 ms below one ("12s", "300ms").
func Until(now, t time.Time) string {
	d := t.Sub(now)
	if d < time.Second {
		return max(d, 0).Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
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

// PolicyText describes a guest's reader policy (its reader patterns,
// whether SCardControl is denied, whether its calls are audited) as status
// and the CLI print it, or is empty for none.
func PolicyText(readers []string, denyControl, audit bool) string {
	var parts []string
	if len(readers) > 0 {
		parts = append(parts, fmt.Sprintf("readers %q", readers))
	}
	if denyControl {
		parts = append(parts, "control denied")
	}
	if audit {
		parts = append(parts, "audit log")
	}
	if len(parts) == 0 {
		return ""
	}
	return "reader policy: " + strings.Join(parts, ", ")
}
