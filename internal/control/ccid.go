package control

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Kinds of GuestStatus.
const (
	KindSSH      = "ssh"
	KindRelay    = "relay"
	KindQEMUCCID = "qemu-ccid"
)

// ChardevStatus is one emulated USB CCID reader of a qemu-ccid guest: one
// ccid-card-passthru chardev.
//
//	{
//	  "chardev": "unix:/run/cardshare/win11-ccid0.sock",  // " (listening)" when cardshare listens
//	  "qemu": true,                  // a QEMU is connected and answered the VSCard Init
//	  "reader": "Yubico YubiKey OTP+FIDO+CCID 00 00",   // host reader bound to it; "" if none
//	  "card": true,                  // the guest sees a card
//	  "t0_for_t1": true,             // a T=1-only card shown to the guest with T=0 added
//	  "apdus": 12,                   // guest commands answered since the bridge started
//	  "since": "2025-05-01T09:00:01.789Z",  // when QEMU connected or went away
//	  "last_error": ""               // why QEMU's last connection ended; "" if none
//	}
type ChardevStatus struct {
	Chardev   string    `json:"chardev"`
	QEMU      bool      `json:"qemu"`
	Reader    string    `json:"reader"`
	Card      bool      `json:"card"`
	T0ForT1   bool      `json:"t0_for_t1"`
	APDUs     uint64    `json:"apdus"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error"`
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// DefaultQEMUSocket is the control socket of `cardshare qemu attach` for
// guest name: qemu-NAME.sock beside control.sock, so that one attach per
// VM can run and `cardshare status` finds them all (QEMUSockets).
func DefaultQEMUSocket(name string) (string, error) {
	p, err := DefaultSocket()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(p), "qemu-"+unsafeName.ReplaceAllString(name, "_")+".sock"), nil
}

// QEMUSockets lists the control sockets of `cardshare qemu attach` in the
// default directory.
func QEMUSockets() ([]string, error) {
	p, err := DefaultSocket()
	if err != nil {
		return nil, err
	}
	m, err := filepath.Glob(filepath.Join(filepath.Dir(p), "qemu-*.sock"))
	if err != nil {
		return nil, fmt.Errorf("control sockets: %w", err)
	}
	var out []string
	for _, f := range m {
		if fi, err := os.Lstat(f); err == nil && fi.Mode()&os.ModeSocket != 0 {
			out = append(out, f)
		}
	}
	return out, nil
}

// writeCCID writes the qemu-ccid guests: one line per emulated reader, and
// the guests' errors.
func writeCCID(w io.Writer, guests []GuestStatus, now time.Time) {
	if len(guests) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "QEMU CCID GUEST\tSTATE\tSINCE\tCHARDEV\tQEMU\tHOST READER\tCARD\tAPDUS\n")
	for _, g := range guests {
		if len(g.Chardevs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t%s\t-\t-\n", g.Name, g.State, age(now, g.Since), orDash(strings.Join(g.Readers, " ")))
		}
		for _, c := range g.Chardevs {
			q, card := "waiting", "no card"
			if c.QEMU {
				q = "connected"
			}
			if c.Card {
				card = "present"
				if c.T0ForT1 {
					card += " (T=0 for T=1)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", g.Name, g.State, age(now, c.Since), c.Chardev, q, orDash(c.Reader), card, c.APDUs)
		}
	}
	tw.Flush()
	for _, g := range guests {
		if g.LastError != "" && g.State != "up" {
			fmt.Fprintf(w, "%s: %s\n", g.Name, g.LastError)
		}
	}
}

// MarshalJSON writes s with every guest's kind and chardevs present: a
// guest without a kind is the document's own ("relay" in relay documents,
// else "ssh"), and chardevs is [] rather than null.
func (s StatusV1) MarshalJSON() ([]byte, error) {
	type plain StatusV1 // without this method
	p := plain(s)
	p.Guests = slices.Clone(s.Guests)
	for i := range p.Guests {
		g := &p.Guests[i]
		if g.Kind == "" {
			g.Kind = KindSSH
			if s.Mode == ModeRelay {
				g.Kind = KindRelay
			}
		}
		if g.Chardevs == nil {
			g.Chardevs = []ChardevStatus{}
		}
	}
	return json.Marshal(p)
}
