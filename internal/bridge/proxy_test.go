package bridge_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// daemons of every kind cardshare meets, as pcsctest fakes them.
var daemons = []struct {
	name string
	d    pcsc.Daemon
}{
	{"1.9.9 (4.4)", pcsc.Daemon{Version: pcsc.V44}},
	{"2.3.3 (4.5 strict)", pcsc.Daemon{Version: pcsc.V45}},
	{"2.4.1 (4.5 lenient)", pcsc.Daemon{Version: pcsc.V45, Lenient: true}},
	{"2.5.3 (4.6)", pcsc.Daemon{Version: pcsc.V46, Lenient: true}},
	{"Fedora 2.3 (4.5 strict, 48 slots)", pcsc.Daemon{Version: pcsc.V45, Readers: 48}},
}

// clients of every kind, as libpcsclite of each release behaves.
var clients = []struct {
	name     string
	v        pcsc.Version
	fallback bool
	slots    int
}{
	{"1.9.9 (4.4)", pcsc.V44, false, 0},
	{"2.3.3 (4.5 strict)", pcsc.V45, false, 0},
	{"2.4.1 (4.5, falls back)", pcsc.V45, true, 0},
	{"2.5.3 (4.6, falls back)", pcsc.V46, true, 0},
	{"Fedora 2.3 (4.5, 48 slots)", pcsc.V45, false, 48},
}

// TestTranslationMatrix runs one session of every client kind against
// every daemon kind through Serve: listing, connect, transmit, a blocking
// wait that sees a card inserted, the reader events counter, a cancelled
// wait. Every pair must work, as the issue asks (9/9 and more).
func TestTranslationMatrix(t *testing.T) {
	for _, d := range daemons {
		for _, c := range clients {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				fake := pcsctest.Serve(t, d.d, "Virtual PCD 00 00", "Virtual PCD 00 01")
				fake.InsertCard("Virtual PCD 00 00", []byte{0x3b, 0x02, 0x14, 0x50})
				e := serveWith(t, fake, func(cfg *bridge.Config) {
					cfg.Daemon = d.d
					cfg.GuestSlots = c.slots
				})
				session(t, e, fake, c.v, c.fallback, c.slots)
				if t.Failed() {
					t.Logf("relay log:\n%s", e.log)
				}
			})
		}
	}
}

func session(t *testing.T, e *env, fake *pcsctest.Daemon, v pcsc.Version, fallback bool, slots int) {
	t.Helper()
	cl, err := pcsctest.Dial(e.socket, v, fallback)
	if err != nil {
		t.Fatalf("CMD_VERSION: %v", err)
	}
	defer cl.Close()
	cl.Slots = slots
	ctx, err := cl.Establish()
	if err != nil {
		t.Fatalf("establish: %v", err)
	}
	names, err := cl.Readers()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if want := []string{"Virtual PCD 00 00", "Virtual PCD 00 01"}; !slices.Equal(names, want) {
		t.Fatalf("readers %q, want %q", names, want)
	}
	card, err := cl.Connect(ctx, "Virtual PCD 00 00")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	resp, err := cl.Transmit(card, []byte{0x00, 0xA4, 0x04, 0x00}, 258)
	if err != nil || string(resp) != "\x00\xA4\x04\x00\x90\x00" {
		t.Fatalf("transmit: %x, %v", resp, err)
	}
	if err := cl.Disconnect(card); err != nil {
		t.Fatalf("disconnect: %v", err)
	}

	// SCardGetStatusChange: register, compare, wait; a card comes.
	states, err := cl.Register()
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if n := pcsctest.Names(states); len(n) != 2 {
		t.Fatalf("wait dump names %q", n)
	}
	events, evErr := cl.ReaderEvents()
	if evErr == nil && events == 0 {
		t.Errorf("reader events 0")
	}
	fake.InsertCard("Virtual PCD 00 01", []byte{0x3b, 0x00})
	if rv, err := cl.Wait(5 * time.Second); err != nil || rv != 0 {
		t.Fatalf("wait: rv %#x, %v", rv, err)
	}
	states, err = cl.Register()
	if err != nil {
		t.Fatalf("register again: %v", err)
	}
	if s := states[1]; s.State&0x20 == 0 || s.EventCounter != 1 {
		t.Errorf("second reader after insertion: state %#x, counter %d", s.State, s.EventCounter)
	}
	// A reader comes and goes: the events counter moves.
	fake.AddReader("Virtual PCD 00 02")
	if rv, err := cl.Wait(5 * time.Second); err != nil || rv != 0 {
		t.Fatalf("wait for the reader: rv %#x, %v", rv, err)
	}
	if _, err := cl.Register(); err != nil {
		t.Fatalf("register a third time: %v", err)
	}
	if evErr == nil {
		if ev, err := cl.ReaderEvents(); err != nil || ev == events {
			t.Errorf("reader events %d after a reader was added, %d before, %v", ev, events, err)
		}
	}
	// The wait times out: STOP, and its answer.
	if rv, err := cl.Stop(); err != nil || rv != 0 {
		t.Fatalf("stop: rv %#x, %v", rv, err)
	}
	// A wait cancelled from another socket.
	if _, err := cl.Register(); err != nil {
		t.Fatalf("register to cancel: %v", err)
	}
	if err := pcsctest.Cancel(e.socket, ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if rv, err := cl.Wait(5 * time.Second); err != nil || rv != pcsc.ReturnCancelled {
		t.Fatalf("cancelled wait: rv %#x, %v", rv, err)
	}
	if err := cl.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// Translation is engaged for exactly the pairs the daemon would reject,
// and the log says so.
func TestTranslationEngaged(t *testing.T) {
	fake := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V45}, "Virtual PCD 00 00")
	e := serveWith(t, fake, func(c *bridge.Config) { c.Daemon = fake.Daemon })
	cl, err := pcsctest.Dial(e.socket, pcsc.V44, false)
	if err != nil {
		t.Fatalf("4.4 client on a strict 4.5 daemon: %v", err)
	}
	if cl.Server != pcsc.V44 {
		t.Errorf("4.4 client told the daemon speaks %s, want 4.4", cl.Server)
	}
	cl.Close()
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "translated=true") })
	if strings.Contains(e.log.String(), "rejected by host pcscd") {
		t.Errorf("rejection logged:\n%s", e.log)
	}
	// The daemon saw its own version proposed.
	if got := fake.Received(); len(got) == 0 || got[0] != pcsc.CmdVersion {
		t.Errorf("daemon received %v", got)
	}
}

// A guest the proxy cannot serve still gets the daemon's rejection and
// the host log explains it: 4.3 (pcsc-lite 1.8.9–1.8.23) is not translated.
func TestTranslationRefused43(t *testing.T) {
	fake := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V44}, "Virtual PCD 00 00")
	e := serveWith(t, fake, func(c *bridge.Config) { c.Daemon = fake.Daemon })
	_, err := pcsctest.Dial(e.socket, pcsc.V43, false)
	var rv pcsctest.RVError
	if !errors.As(err, &rv) || uint32(rv) != pcsc.ReturnServiceStopped {
		t.Fatalf("4.3 client: %v, want SCARD_E_SERVICE_STOPPED", err)
	}
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "rejected by host pcscd") })
	if !strings.Contains(e.log.String(), "1.8.9–1.8.23") {
		t.Errorf("log does not name the guest's releases:\n%s", e.log)
	}
}

// policyEnv serves a 4.4 daemon with two readers, a card in each, through
// a relay with the policy readers: ["Virtual PCD 00 01"].
func policyEnv(t *testing.T, mod func(*bridge.Config)) (*env, *pcsctest.Daemon) {
	t.Helper()
	fake := pcsctest.Serve(t, pcsc.Daemon{Version: pcsc.V44}, "Virtual PCD 00 00", "Virtual PCD 00 01")
	fake.InsertCard("Virtual PCD 00 00", []byte{0x3b, 0x02, 0x14, 0x50})
	fake.InsertCard("Virtual PCD 00 01", []byte{0x3b, 0x02, 0x14, 0x51})
	e := serveWith(t, fake, func(c *bridge.Config) {
		c.Daemon = fake.Daemon
		c.Policy = &pcsc.Policy{Readers: []string{"Virtual PCD 00 01"}}
		if mod != nil {
			mod(c)
		}
	})
	return e, fake
}

func TestPolicyReaders(t *testing.T) {
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			e, fake := policyEnv(t, func(cfg *bridge.Config) { cfg.GuestSlots = c.slots })
			cl, err := pcsctest.Dial(e.socket, c.v, c.fallback)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			cl.Slots = c.slots
			ctx, err := cl.Establish()
			if err != nil {
				t.Fatal(err)
			}
			// List and the wait dump show the visible reader only.
			if names, err := cl.Readers(); err != nil || !slices.Equal(names, []string{"Virtual PCD 00 01"}) {
				t.Fatalf("list %q, %v", names, err)
			}
			states, err := cl.Register()
			if err != nil {
				t.Fatal(err)
			}
			if n := pcsctest.Names(states); !slices.Equal(n, []string{"Virtual PCD 00 01"}) {
				t.Fatalf("wait dump %q", n)
			}
			if len(states) != max(c.slots, 16) && !(c.v == pcsc.V46) {
				t.Errorf("array of %d records", len(states))
			}
			// An insertion in the hidden reader wakes the guest (events
			// name no reader), and it sees nothing new.
			fake.RemoveCard("Virtual PCD 00 00")
			if rv, err := cl.Wait(5 * time.Second); err != nil || rv != 0 {
				t.Fatalf("wait: %#x %v", rv, err)
			}
			states, err = cl.Register()
			if err != nil {
				t.Fatal(err)
			}
			if n := pcsctest.Names(states); !slices.Equal(n, []string{"Virtual PCD 00 01"}) {
				t.Fatalf("after the hidden reader's event: %q", n)
			}
			if _, err := cl.Stop(); err != nil {
				t.Fatal(err)
			}
			// Connect: the hidden reader is unknown and never reaches pcscd.
			before := len(fake.Received())
			if _, err := cl.Connect(ctx, "Virtual PCD 00 00"); !errors.Is(err, pcsctest.RVError(pcsc.ReturnUnknownReader)) {
				t.Fatalf("connect to the hidden reader: %v, want SCARD_E_UNKNOWN_READER", err)
			}
			if got := fake.Received()[before:]; slices.Contains(got, pcsc.CmdConnect) {
				t.Errorf("the refused connect reached pcscd: %v", got)
			}
			card, err := cl.Connect(ctx, "Virtual PCD 00 01")
			if err != nil {
				t.Fatalf("connect to the visible reader: %v", err)
			}
			if resp, err := cl.Transmit(card, []byte("hi"), 10); err != nil || string(resp) != "hi\x90\x00" {
				t.Fatalf("transmit: %q %v", resp, err)
			}
			waitFor(t, func() bool { return strings.Contains(e.log.String(), "refused guest call") })
			log := e.log.String()
			for _, want := range []string{"cmd=SCARD_CONNECT", `reader="Virtual PCD 00 00"`, "rv=0x80100009", "reader policy hides"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
		})
	}
}

// Hot-plugged readers follow the policy: a hidden one never appears, a
// visible one does, and the events counter of a 4.5 guest moves only then.
func TestPolicyHotplug(t *testing.T) {
	e, fake := policyEnv(t, func(c *bridge.Config) { c.Policy.Readers = []string{"Virtual PCD 00 01", "Yubico*"} })
	cl, err := pcsctest.Dial(e.socket, pcsc.V45, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Establish(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(); err != nil {
		t.Fatal(err)
	}
	ev0, err := cl.ReaderEvents()
	if err != nil {
		t.Fatal(err)
	}
	fake.AddReader("Hidden Reader 00 00")
	if rv, err := cl.Wait(5 * time.Second); err != nil || rv != 0 {
		t.Fatalf("wait: %#x %v", rv, err)
	}
	states, err := cl.Register()
	if err != nil {
		t.Fatal(err)
	}
	if n := pcsctest.Names(states); !slices.Equal(n, []string{"Virtual PCD 00 01"}) {
		t.Fatalf("after a hidden reader came: %q", n)
	}
	if ev, _ := cl.ReaderEvents(); ev != ev0 {
		t.Errorf("events %d → %d for a hidden reader", ev0, ev)
	}
	fake.AddReader("Yubico YubiKey 00 00")
	if rv, err := cl.Wait(5 * time.Second); err != nil || rv != 0 {
		t.Fatalf("wait: %#x %v", rv, err)
	}
	states, err = cl.Register()
	if err != nil {
		t.Fatal(err)
	}
	if n := pcsctest.Names(states); !slices.Equal(n, []string{"Virtual PCD 00 01", "Yubico YubiKey 00 00"}) {
		t.Fatalf("after a visible reader came: %q", n)
	}
	if ev, _ := cl.ReaderEvents(); ev == ev0 {
		t.Errorf("events stayed %d when a visible reader came", ev)
	}
}

func TestPolicyControlDeny(t *testing.T) {
	e, fake := policyEnv(t, func(c *bridge.Config) { c.Policy.DenyControl = true })
	cl, err := pcsctest.Dial(e.socket, pcsc.V44, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, _ := cl.Establish()
	card, err := cl.Connect(ctx, "Virtual PCD 00 01")
	if err != nil {
		t.Fatal(err)
	}
	before := len(fake.Received())
	if _, err := cl.Control(card, 0x42000D48, []byte{1, 2, 3, 4}, 256); !errors.Is(err, pcsctest.RVError(pcsc.ReturnUnsupported)) {
		t.Fatalf("control: %v, want SCARD_E_UNSUPPORTED_FEATURE", err)
	}
	// The payload was consumed: the connection carries on.
	if resp, err := cl.Transmit(card, []byte{0, 0, 0, 0}, 10); err != nil || len(resp) != 6 {
		t.Fatalf("transmit after the refused control: %x %v", resp, err)
	}
	if got := fake.Received()[before:]; slices.Contains(got, pcsc.CmdControl) {
		t.Errorf("the refused control reached pcscd: %v", got)
	}
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "policy denies SCardControl") })
}

// SCARD_CANCEL of another guest's context is refused (pcscd looks the
// context up across all its clients: pcsc-lite 2.5.1
// src/winscard_svc.c:673-707).
func TestPolicyCancelForeignContext(t *testing.T) {
	e, fake := policyEnv(t, nil)
	// Another guest, straight to the daemon.
	other, err := pcsctest.Dial(fake.Socket, pcsc.V44, false)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherCtx, _ := other.Establish()
	if _, err := other.Register(); err != nil {
		t.Fatal(err)
	}
	err = pcsctest.Cancel(e.socket, otherCtx)
	if !errors.Is(err, pcsctest.RVError(pcsc.ReturnInvalidHandle)) {
		t.Fatalf("cancel of a foreign context: %v, want SCARD_E_INVALID_HANDLE", err)
	}
	if slices.Contains(fake.Received(), pcsc.CmdCancel) {
		t.Errorf("the foreign cancel reached pcscd")
	}
	// Its own contexts it may cancel; once released, no more.
	cl, err := pcsctest.Dial(e.socket, pcsc.V44, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, _ := cl.Establish()
	if err := pcsctest.Cancel(e.socket, ctx); err != nil {
		t.Fatalf("cancel of its own context: %v", err)
	}
	cl.Release(ctx)
	if err := pcsctest.Cancel(e.socket, ctx); !errors.Is(err, pcsctest.RVError(pcsc.ReturnInvalidHandle)) {
		t.Fatalf("cancel of a released context: %v", err)
	}
}

// The audit log: one line per call, with the fields the issue asks for,
// and never payload bytes.
func TestAuditLog(t *testing.T) {
	e, _ := policyEnv(t, func(c *bridge.Config) { c.Policy, c.Audit = nil, true })
	cl, err := pcsctest.Dial(e.socket, pcsc.V44, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := cl.Establish()
	card, err := cl.Connect(ctx, "Virtual PCD 00 00")
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("SECRET-PIN-1234")
	if _, err := cl.Transmit(card, secret, 64); err != nil {
		t.Fatal(err)
	}
	cl.Disconnect(card)
	cl.Release(ctx)
	cl.Close()
	waitFor(t, func() bool { return strings.Contains(e.log.String(), "cmd=SCARD_RELEASE_CONTEXT") })
	log := e.log.String()
	var transmit string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "cmd=SCARD_TRANSMIT") {
			transmit = l
		}
	}
	for _, want := range []string{"level=INFO", `msg="pcsc call"`, `reader="Virtual PCD 00 00"`, "rv=0x00000000",
		"duration=", fmt.Sprintf("req_bytes=%d", 8+32+len(secret)), fmt.Sprintf("reply_bytes=%d", 32+len(secret)+2)} {
		if !strings.Contains(transmit, want) {
			t.Errorf("transmit line lacks %q: %s", want, transmit)
		}
	}
	for _, cmd := range []string{"SCARD_ESTABLISH_CONTEXT", "SCARD_CONNECT", "SCARD_DISCONNECT", "SCARD_RELEASE_CONTEXT"} {
		if !strings.Contains(log, "cmd="+cmd) {
			t.Errorf("no line for %s", cmd)
		}
	}
	if strings.Contains(log, "SECRET") || strings.Contains(log, fmt.Sprintf("%x", secret)) {
		t.Errorf("payload in the log:\n%s", log)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []*bridge.Config{
		{Policy: &pcsc.Policy{Readers: []string{"[bad"}}},
		{GuestSlots: -1},
		{GuestSlots: pcsc.MaxSlots + 1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (&bridge.Config{Policy: &pcsc.Policy{Readers: []string{"Yubico*"}}, GuestSlots: 48}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// With a policy, a connection whose protocol the proxy cannot read is
// refused, never relayed as bytes past the policy (issue 13, item 2). The
// pairs that reach the byte relay: a 4.3 guest on a 4.3 daemon; any
// guest claiming a major other than 4 with minor 4 or 5 on pcsc-lite
// 2.4.1, which accepts it (src/winscard_svc.c:400-414 in 2.4.1) and then
// serves it 4.5 in full; and a daemon newer than 4.6.
func TestPolicyRefusesUnknownProtocol(t *testing.T) {
	for _, c := range []struct {
		name   string
		daemon pcsc.Daemon
		guest  pcsc.Version
	}{
		{"4.3 on 4.3", pcsc.Daemon{Version: pcsc.V43}, pcsc.V43},
		{"5.4 on 2.4.1", pcsc.Daemon{Version: pcsc.V45, Lenient: true}, pcsc.Version{Major: 5, Minor: 4}},
		{"0.5 on 2.4.1", pcsc.Daemon{Version: pcsc.V45, Lenient: true}, pcsc.Version{Major: 0, Minor: 5}},
		{"4.4 on 4.7", pcsc.Daemon{Version: pcsc.Version{Major: 4, Minor: 7}, Lenient: true}, pcsc.V44},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := pcsctest.Serve(t, c.daemon, "Virtual PCD 00 00", "Virtual PCD 00 01")
			e := serveWith(t, fake, func(cfg *bridge.Config) {
				cfg.Daemon = fake.Daemon
				cfg.Policy = &pcsc.Policy{Readers: []string{"Virtual PCD 00 01"}}
			})
			cl, err := pcsctest.Dial(e.socket, c.guest, false)
			if err != nil {
				return // refused at the handshake: fine too
			}
			defer cl.Close()
			names, err := cl.Readers()
			if err == nil || slices.Contains(names, "Virtual PCD 00 00") {
				t.Fatalf("guest read the readers %q, %v; want the connection refused", names, err)
			}
			waitFor(t, func() bool { return strings.Contains(e.log.String(), "unknown to cardshare's proxy") })
		})
	}
}
