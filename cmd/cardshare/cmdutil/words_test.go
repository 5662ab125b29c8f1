package cmdutil

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

// Hints that are commands carry the user's own words: their -F file, the
// guest's name or address, their known_hosts file.
func TestGuestHint(t *testing.T) {
	alias := Guest{Name: "myvm", SSHConfig: "/home/me/vms conf", Resolved: true, Source: vm.Source{Kind: "ssh_config"},
		Target: sshdial.Target{User: "dev", HostName: "127.0.0.1", Port: 2222}}
	box := Guest{Name: "devvm", Resolved: true, Source: vm.Source{Kind: "virtualbox"},
		Target: sshdial.Target{User: "dev", HostName: "127.0.0.1", Port: 2222}}
	dest := Guest{Name: "dev@10.0.0.7:2222"}
	unknown := Guest{Name: "myvmm", Resolved: true, Source: vm.Source{Kind: "host name", Looked: []string{"libvirt: no domain named myvmm"}}}
	noSuchHost := &fakeErr{sshdial.ErrNoSuchHost}
	for _, c := range []struct {
		err  error
		g    Guest
		want string
	}{
		{sshdial.ErrAuth, alias, "`ssh -F '/home/me/vms conf' myvm` logs in"},
		{sshdial.ErrAuth, alias, "IdentityFile for the guest in /home/me/vms conf"},
		{sshdial.ErrConnect, box, "`ssh -v -p 2222 dev@127.0.0.1` shows the details"},
		{sshdial.ErrConnect, dest, "`ssh -v ssh://dev@10.0.0.7:2222`"},
		{sshdial.ErrHostUnknown, alias, "(or `ssh -F '/home/me/vms conf' myvm` once)"},
		{noSuchHost, unknown, "myvmm is not a Host in ~/.ssh/config, nor a VM that libvirt knows (no domain named myvmm)"},
		{noSuchHost, unknown, "`cardshare resolve myvmm`"},
	} {
		if h := GuestHint(fmt.Errorf("%s: %w", c.g.Name, c.err), c.g); !strings.Contains(h, c.want) {
			t.Errorf("%v for %s: hint %q lacks %q", c.err, c.g.Name, h, c.want)
		}
	}
	// Other errors get the general hint.
	if h := GuestHint(sshdial.ErrProxyCommand, alias); h != Hint(sshdial.ErrProxyCommand) {
		t.Errorf("ProxyCommand: %q", h)
	}
}

type fakeErr struct{ is error }

func (e *fakeErr) Error() string        { return "lookup: no such host" }
func (e *fakeErr) Is(target error) bool { return target == e.is }
