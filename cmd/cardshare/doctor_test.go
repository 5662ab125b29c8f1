package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// fakePCSCD serves CMD_VERSION as a daemon d would and CMD_GET_READERS_STATE
// with the given readers, on a socket that lives until the test ends.
func fakePCSCD(t *testing.T, d pcsc.Daemon, readers ...reader) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "pcscd.comm")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	states := make([]byte, maxReaderContexts*readerStateSize)
	for i, r := range readers {
		rec := states[i*readerStateSize:]
		copy(rec, r.Name)
		st := uint32(0x2) // SCARD_ABSENT
		if r.Card {
			st = 0x34
		}
		binary.LittleEndian.PutUint32(rec[readerStateOffset:], st)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var h [8]byte
				for {
					if _, err := io.ReadFull(c, h[:]); err != nil {
						return
					}
					switch binary.LittleEndian.Uint32(h[4:]) {
					case pcsc.CmdVersion:
						var b [12]byte
						if _, err := io.ReadFull(c, b[:]); err != nil {
							return
						}
						v := pcsc.Version{Major: binary.LittleEndian.Uint32(b[0:]), Minor: binary.LittleEndian.Uint32(b[4:])}
						r := pcsc.VersionReply{Version: d.Version}
						if !d.Accepts(v) {
							r.RV = pcsc.ReturnServiceStopped
						}
						c.Write(pcsc.AppendVersionReply(nil, r))
					case cmdGetReadersState:
						c.Write(states)
					default:
						return
					}
				}
			}()
		}
	}()
	return sock
}

func TestListReaders(t *testing.T) {
	t.Parallel()
	strict45 := pcsc.Daemon{Version: pcsc.V45}
	sock := fakePCSCD(t, strict45, reader{Name: "Yubico YubiKey OTP+FIDO+CCID 00 00", Card: true}, reader{Name: "Alcor Micro AU9540 01 00"})
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
		want     checkStatus
		msg      string
	}{
		{"no polkit", without, nil, service, nil, statusOK, "built without polkit"},
		{"polkit, refused", with, nil, service, refused, statusFail, "polkit refused this process"},
		{"polkit disabled at run time", with, [][]string{{"/usr/sbin/pcscd", "--foreground", "--disable-polkit"}}, service, nil, statusOK, "--disable-polkit"},
		{"polkit, desktop session", with, nil, desktop, nil, statusWarn, "as a service"},
		{"polkit, allowed service", with, nil, service, nil, statusOK, "allows this process (a systemd service)"},
		{"no pcscd program", "", nil, service, nil, statusSkip, "cannot tell"},
		{"no pcscd program, refused", "", nil, service, refused, statusFail, "polkit is the usual reason"},
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
			if (r.Status == statusFail || r.Status == statusWarn) && !strings.Contains(r.Fix, `subject.user == "alice"`) && tc.version != without {
				t.Errorf("fix %q lacks the polkit rule", r.Fix)
			}
		})
	}
}

// doctorLines maps each check name to its status and message line.
func doctorLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if len(l) < 20 || l[0] == ' ' {
			continue
		}
		m[strings.TrimSpace(l[6:20])] = l
	}
	return m
}

func TestCLIDoctorAllPass(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	p.InsertCard(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	if code, _, errs := cli(t, "", "guest", "setup", "-F", s.ConfigFile, s.HostAlias); code != 0 {
		t.Fatalf("guest setup: %s", errs)
	}
	code, out, errs := cli(t, "", "doctor", "--pcscd-socket", p.Socket, "-F", s.ConfigFile, s.HostAlias)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	lines := doctorLines(out)
	for name, want := range map[string]string{
		"host pcscd":   "protocol 4.4",
		"readers":      "2 readers: " + testenv.VPCDReader + " (card inserted); " + testenv.VPCDSecondReader,
		"polkit":       "",
		"ssh":          "logged in to guest as " + s.User,
		"forwarding":   "forwards Unix sockets",
		"guest socket": filepath.Join(s.Home, ".cardshare", "pcscd.comm") + " (private directory",
		"libpcsclite":  "guest pcsc-lite 1.9.9 (protocol 4.4) works with host pcscd protocol 4.4 (pcsc-lite 1.8.24–2.2.3): both speak protocol 4.4",
		"environment":  "~/.profile sets PCSCLITE_CSOCK_NAME",
	} {
		l, ok := lines[name]
		if !ok || (!strings.HasPrefix(l, "OK  ") && !strings.HasPrefix(l, "WARN")) || !strings.Contains(l, want) {
			t.Errorf("%s: line %q, want OK with %q", name, l, want)
		}
	}
	if strings.Contains(out, "FAIL") || errs != "" {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// Each failure is reported on its own line with a fix, later checks that
// do not depend on it still run, and the exit status is 1.
func TestCLIDoctorFailures(t *testing.T) {
	t.Parallel()
	p := testenv.StartPCSCD(t)
	s := testenv.StartSSHD(t, testenv.SSHDOptions{})
	noForward := testenv.StartSSHD(t, testenv.SSHDOptions{Config: []string{"AllowStreamLocalForwarding no"}})
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	shared, err := os.MkdirTemp("", "csshared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o1777)
	noReaders := fakePCSCD(t, pcsc.Daemon{Version: pcsc.V44})
	strict45 := fakePCSCD(t, pcsc.Daemon{Version: pcsc.V45}, reader{Name: "Fake Reader 00 00"})

	tests := []struct {
		name  string
		args  []string
		fails map[string]string // check -> message part
		skips []string
		fix   string
	}{
		{"pcscd missing", []string{"--pcscd-socket", "/nonexistent/pcscd.comm"},
			map[string]string{"host pcscd": "nothing listens on /nonexistent/pcscd.comm"}, []string{"readers"}, "systemctl enable --now pcscd.socket"},
		{"no readers", []string{"--pcscd-socket", noReaders},
			map[string]string{"readers": "pcscd lists no reader"}, nil, "plug the reader in"},
		{"unknown host", []string{"--pcscd-socket", p.Socket, "-F", sshConfig(t, s, empty, s.ClientKey), "guest"},
			map[string]string{"ssh": "host key for [127.0.0.1]:"}, []string{"forwarding", "guest socket", "libpcsclite", "environment"}, "--accept-new"},
		{"forwarding refused", []string{"--pcscd-socket", p.Socket, "-F", noForward.ConfigFile, noForward.HostAlias},
			map[string]string{"forwarding": "guest sshd refused the socket forward", "environment": "~/.profile does not set PCSCLITE_CSOCK_NAME"}, nil, "AllowStreamLocalForwarding yes"},
		{"shared socket directory", []string{"--pcscd-socket", p.Socket, "-F", s.ConfigFile, "--guest-socket", shared + "/pcscd.comm", s.HostAlias},
			map[string]string{"guest socket": "guest socket directory is writable by other users", "environment": "does not set"}, nil, "read your PIN"},
		{"protocol mismatch", []string{"--pcscd-socket", strict45, "-F", s.ConfigFile, s.HostAlias},
			map[string]string{"libpcsclite": "cannot talk", "environment": "does not set"}, nil, "upgrade the guest's libpcsclite to 2.4.1 or later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := cli(t, "", append([]string{"doctor"}, tt.args...)...)
			if code != 1 || !strings.Contains(errs, "cardshare: error: doctor: checks failed") {
				t.Errorf("exit %d, stderr %q", code, errs)
			}
			lines := doctorLines(out)
			for name, want := range tt.fails {
				if l := lines[name]; !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, want) {
					t.Errorf("%s: %q, want FAIL with %q\n%s", name, l, want, out)
				}
			}
			for _, name := range tt.skips {
				if !strings.HasPrefix(lines[name], "SKIP") {
					t.Errorf("%s: %q, want SKIP", name, lines[name])
				}
			}
			if !strings.Contains(out, "fix: ") || !strings.Contains(out, tt.fix) {
				t.Errorf("no fix with %q:\n%s", tt.fix, out)
			}
			if n := bytes.Count([]byte(out), []byte("FAIL")); n != len(tt.fails) {
				t.Errorf("%d FAIL lines, want %d:\n%s", n, len(tt.fails), out)
			}
		})
	}
}
