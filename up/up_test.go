package up

import (
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// policy must give what `expose --readers/--control` gives for the same
// values: nil when the guest may use everything.
func TestPolicy(t *testing.T) {
	if p := policy(config.Guest{}); p != nil {
		t.Errorf("no readers, no control: %+v, want nil", p)
	}
	if p := policy(config.Guest{Control: "allow"}); p != nil {
		t.Errorf("control allow: %+v, want nil", p)
	}
	p := policy(config.Guest{Readers: []string{"Yubico*"}, Control: "deny"})
	if p == nil || !p.DenyControl || !slices.Equal(p.Readers, []string{"Yubico*"}) {
		t.Errorf("readers and deny: %+v", p)
	}
	if p := policy(config.Guest{Control: "deny"}); p == nil || !p.DenyControl || len(p.Readers) != 0 {
		t.Errorf("deny only: %+v", p)
	}
}

// log_level follows the file unless -v asked for debug.
func TestSetLevel(t *testing.T) {
	for _, tc := range []struct {
		level   string
		verbose bool
		want    slog.Level
	}{
		{"", false, slog.LevelInfo},
		{"debug", false, slog.LevelDebug},
		{"warn", false, slog.LevelWarn},
		{"error", false, slog.LevelError},
		{"error", true, slog.LevelDebug},
	} {
		lv := new(slog.LevelVar)
		s := New(t.Context(), Options{Level: lv, Verbose: tc.verbose})
		s.setLevel(config.Host{LogLevel: tc.level})
		if lv.Level() != tc.want {
			t.Errorf("log_level %q, verbose %v: %v, want %v", tc.level, tc.verbose, lv.Level(), tc.want)
		}
	}
}

// A service keeps retrying a guest whose name does not resolve (yet), and
// never gives up on a guest that is down or booting; a config or guest
// mistake stops the guest until a reload.
func TestGiveUp(t *testing.T) {
	s := New(t.Context(), Options{Level: new(slog.LevelVar)})
	c := s.forwardConfig(&guestRun{ctx: t.Context()})
	if c.Wait != 0 {
		t.Errorf("Wait = %v, want 0 (forever)", c.Wait)
	}
	for _, tc := range []struct {
		err  error
		stop bool
	}{
		{sshdial.ErrNoSuchHost, false},
		{sshdial.ErrConnect, false},
		{sshdial.ErrHostKeyChanged, true},
		{sshdial.ErrAuth, true},
	} {
		if got := c.GiveUp(tc.err); got != tc.stop {
			t.Errorf("GiveUp(%v) = %v, want %v", tc.err, got, tc.stop)
		}
	}
}

// A vm: that nothing knows is a warning that says where cardshare looked.
func TestVMWarning(t *testing.T) {
	g := config.Guest{Name: "build", VM: "build"}
	src := vm.Source{Kind: "host name", Looked: []string{"libvirt: no domain named build"}}
	w := VMWarning(g, src, "")
	want := "guest build: build is not a Host in ~/.ssh/config, nor a VM that libvirt knows (no domain named build); VirtualBox, Vagrant, Lima and VMware are not installed (or have no VMs here); connecting to it as the host name build"
	if w != want {
		t.Errorf("warning\n got %s\nwant %s", w, want)
	}
	if w := VMWarning(g, vm.Source{Kind: "libvirt"}, ""); w != "" {
		t.Errorf("a VM libvirt knows: %q", w)
	}
	if w := VMWarning(config.Guest{Name: "d", Destination: "d"}, vm.Source{Kind: "host name"}, ""); w != "" {
		t.Errorf("a destination: %q", w)
	}
}

// A missing ssh_config file is an error of its own for destinations too.
func TestLookupMissingSSHConfig(t *testing.T) {
	_, _, err := Lookup(t.Context(), config.Guest{Name: "d", Destination: "dev@127.0.0.1:2222"}, t.TempDir()+"/none")
	if !errors.Is(err, sshdial.ErrConfigFile) {
		t.Errorf("err = %v, want ErrConfigFile", err)
	}
}

// A guest's hint goes through GuestHint, with the guest and the file's
// ssh_config, so that its commands are in the user's words.
func TestGuestHintOption(t *testing.T) {
	s := New(t.Context(), Options{Level: new(slog.LevelVar), Hint: func(error) string { return "general" }})
	g := config.Guest{Name: "devvm", VM: "devvm"}
	if h := s.guestHint(g, "/vms.conf", sshdial.ErrAuth); h != "general" {
		t.Errorf("without GuestHint: %q", h)
	}
	s = New(t.Context(), Options{Level: new(slog.LevelVar), GuestHint: func(g config.Guest, cfg string, err error) string {
		return "ssh -F " + cfg + " " + g.Target()
	}})
	if h := s.guestHint(g, "/vms.conf", sshdial.ErrAuth); h != "ssh -F /vms.conf devvm" {
		t.Errorf("with GuestHint: %q", h)
	}
}
