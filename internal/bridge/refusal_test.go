package bridge_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// TestServeHostRefusalLogged: in relay mode the guest agent's bridge dials
// the host, whose bridge refuses a connection over the guest's cap with
// SCARD_E_NO_SERVICE (connlimit). The agent logged that as a protocol
// mismatch ("guest rejected by host pcscd ... protocol 4.4 ... host pcscd
// speaks protocol 4.4 ... and rejects it") with a hint to upgrade
// pcsc-lite; it must say that the host refused the connection, and hint at
// the cap.
func TestServeHostRefusalLogged(t *testing.T) {
	daemon := pcsc.Daemon{Version: pcsc.V44}
	l, err := connlimit.New(&connlimit.Config{PerGuest: 1, Total: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	host := serveWith(t, pcsctest.Start(t, daemon), func(c *bridge.Config) { c.Daemon, c.Limiter, c.Guest = daemon, l, "vm" })
	// The agent knows no daemon: it relays the host's answers as they are.
	agent := serveDial(t, hostpcsc.Socket{Path: host.socket}.Dial, nil)

	first := agent.dial(t)
	if r := versionExchange(t, first, pcsc.V44); !r.Accepted() {
		t.Fatalf("first connection: %+v", r)
	}
	second := agent.dial(t)
	if r := versionExchange(t, second, pcsc.V44); r.RV != pcsc.ReturnNoService {
		t.Fatalf("second connection: rv %#x, want SCARD_E_NO_SERVICE", r.RV)
	}
	second.Close()
	waitFor(t, func() bool {
		return strings.Contains(agent.log.String(), "level=WARN") || strings.Contains(agent.log.String(), "level=ERROR")
	})
	log := agent.log.String()
	for _, bad := range []string{"rejected by host pcscd", "rejects it", "upgrade"} {
		if strings.Contains(log, bad) {
			t.Errorf("a refusal logged as a version mismatch (%q):\n%s", bad, log)
		}
	}
	for _, want := range []string{"SCARD_E_NO_SERVICE", "hint=", "max_guest_conns"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
