package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

func TestListReaders(t *testing.T) {
	t.Parallel()
	strict45 := pcsc.Daemon{Version: pcsc.V45}
	d := pcsctest.Serve(t, strict45, "Yubico YubiKey OTP+FIDO+CCID 00 00", "Alcor Micro AU9540 01 00")
	d.InsertCard("Yubico YubiKey OTP+FIDO+CCID 00 00", []byte{0x3b, 0x00})
	sock := d.Socket
	rs, err := listReaders(context.Background(), sock, strict45)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "Yubico YubiKey OTP+FIDO+CCID 00 00" || !rs[0].Card || rs[1].Card {
		t.Errorf("readers %+v", rs)
	}
	// A daemon that rejects the version is an error, not a hang.
	if _, err := listReaders(context.Background(), sock, pcsc.Daemon{Version: pcsc.V44}); err == nil {
		t.Error("no error for a rejected CMD_VERSION")
	}
}

func TestPolkitCheck(t *testing.T) {
	const with = "pcsc-lite version 2.0.3.\nEnabled features: Linux x86_64-pc-linux-gnu libsystemd serial usb libudev polkit ipcdir=/run/pcscd filter\n"
	const without = "pcsc-lite version 1.9.9.\nEnabled features: Linux x86_64-pc-linux-gnu libsystemd serial usb libudev usbdropdir=/usr/lib/pcsc/drivers ipcdir=/run/pcscd filter configdir=/etc/reader.conf.d\n"
	desktop := map[string]string{"USER": "alice", "XDG_SESSION_ID": "2"}
	service := map[string]string{"USER": "alice", "INVOCATION_ID": "f00"}
	refused := fmt.Errorf("%w (/run/pcscd/pcscd.comm)", pcsc.ErrRefused)
	for _, tc := range []struct {
		name     string
		version  string
		args     [][]string
		env      map[string]string
		probeErr error
		want     Status
		msg      string
	}{
		{"no polkit", without, nil, service, nil, OK, "built without polkit"},
		{"polkit, refused", with, nil, service, refused, Fail, "polkit refused this process"},
		{"polkit disabled at run time", with, [][]string{{"/usr/sbin/pcscd", "--foreground", "--disable-polkit"}}, service, nil, OK, "--disable-polkit"},
		{"polkit, desktop session", with, nil, desktop, nil, Warn, "as a service"},
		{"polkit, allowed service", with, nil, service, nil, OK, "allows this process (a systemd service)"},
		{"no pcscd program", "", nil, service, nil, Skip, "cannot tell"},
		{"no pcscd program, refused", "", nil, service, refused, Fail, "polkit is the usual reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &doctor{
				pcscdVersion: func(context.Context) (string, error) {
					if tc.version == "" {
						return "", errors.New("no pcscd program found")
					}
					return tc.version, nil
				},
				pcscdArgs: func() [][]string { return tc.args },
				getenv:    func(k string) string { return tc.env[k] },
			}
			r := d.polkitCheck(context.Background(), tc.probeErr)
			if r.Status != tc.want || !strings.Contains(r.Msg, tc.msg) {
				t.Errorf("%s: %s, want %s with %q", r.Status, r.Msg, tc.want, tc.msg)
			}
			if (r.Status == Fail || r.Status == Warn) && !strings.Contains(r.Fix, `subject.user == "alice"`) && tc.version != without {
				t.Errorf("fix %q lacks the polkit rule", r.Fix)
			}
		})
	}
}

// The fix is a command the user can paste: it carries their own -F and
// guest socket.
func TestSetupCommand(t *testing.T) {
	d := &doctor{cfg: &Config{}}
	if got := d.setupCommand("myvm"); got != "cardshare guest setup myvm" {
		t.Errorf("plain: %s", got)
	}
	d.cfg.SSHConfig, d.cfg.GuestSocket = "/home/me/vms/ssh config", "/run/user/1000/pcscd.comm"
	want := `cardshare guest setup -F '/home/me/vms/ssh config' --socket /run/user/1000/pcscd.comm dev@10.0.0.7:2222`
	if got := d.setupCommand("dev@10.0.0.7:2222"); got != want {
		t.Errorf("with flags:\n got %s\nwant %s", got, want)
	}
}

// Config.Host replaces the pcscd checks (macOS, Windows).
func TestHostReplacesPCSCD(t *testing.T) {
	var names []string
	sum := Run(context.Background(), &Config{
		PCSCDSocket: "/nonexistent/pcscd.comm",
		Backend:     hostpcsc.PCSCDSocket, // the backend line stays; the pcscd lines go
		Host: func(context.Context) []HostCheck {
			return []HostCheck{{"PC/SC service", Result{Status: Skip}}, {"ssh-agent", Result{Status: Warn}}}
		},
		Report: func(name string, r Result) { names = append(names, name+" "+string(r.Status)) },
	}, "")
	if got := strings.Join(names, ", "); got != "backend OK, PC/SC service SKIP, ssh-agent WARN" || sum.Warned != 1 || sum.Failed != 0 {
		t.Errorf("reported %q, %+v", got, sum)
	}
}
