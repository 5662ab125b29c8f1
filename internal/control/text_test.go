package control

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestWriteText(t *testing.T) {
	now := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	retry := now.Add(12 * time.Second)
	s := &StatusV1{
		Version: 1, PID: 4242, Config: "/home/me/.config/cardshare/config.yaml",
		Started: now.Add(-time.Hour), Loaded: now.Add(-5 * time.Minute),
		ReloadError: "/home/me/.config/cardshare/config.yaml:3: unknown key \"keepalife\" in host",
		Host:        HostStatus{PCSCDSocket: "/run/pcscd/pcscd.comm", Protocol: "4.4", Releases: "pcsc-lite 1.8.24–2.2.3"},
		Guests: []GuestStatus{
			{Name: "devvm", State: "up", Since: now.Add(-133 * time.Second), Socket: "/run/user/1000/cardshare/pcscd.comm",
				GuestProtocol: "4.4", HostProtocol: "4.4", OpenConnections: 1, Connections: 14, BytesUp: 3100, BytesDown: 12345},
			{Name: "build", State: "backing-off", Since: now.Add(-3 * time.Second), RetryAt: &retry,
				HostProtocol: "4.4", LastError: "dial tcp 127.0.0.1:2223: connect: connection refused"},
		},
	}
	var b strings.Builder
	s.WriteText(&b, now)
	want := `cardshare up, pid 4242, running for 1h0m0s
config /home/me/.config/cardshare/config.yaml, loaded 5m0s ago
host pcscd /run/pcscd/pcscd.comm: protocol 4.4 (pcsc-lite 1.8.24–2.2.3)
last reload: /home/me/.config/cardshare/config.yaml:3: unknown key "keepalife" in host

GUEST  STATE        SINCE             CONNECTIONS       UP/DOWN         PROTOCOL   GUEST SOCKET
devvm  up           2m13s             1 open, 14 total  3.1 kB / 12 kB  4.4 → 4.4  /run/user/1000/cardshare/pcscd.comm
build  backing-off  3s, retry in 12s  0 open, 0 total   0 B / 0 B       - → 4.4    -

build: dial tcp 127.0.0.1:2223: connect: connection refused
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteTextRelay(t *testing.T) {
	now := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	s := &StatusV1{
		Version: 1, Mode: ModeRelay, PID: 77, Config: "/home/me/.config/cardshare/relay", Listen: "[::]:7743",
		Started: now.Add(-time.Hour), Loaded: now.Add(-time.Hour),
		Host: HostStatus{Backend: "native", Source: "native PC/SC (winscard.dll)", Protocol: "4.6", Releases: "pcsc-lite 2.5.x"},
		Guests: []GuestStatus{
			{Name: "vm1", State: "up", Since: now.Add(-time.Minute), Address: "192.168.122.5:40112",
				HostProtocol: "4.4", OpenConnections: 2, Connections: 9, BytesUp: 1200, BytesDown: 4000,
				Readers: []string{"Yubico YubiKey*"}, Control: "deny"},
			{Name: "vm2", State: "disconnected", Since: now.Add(-time.Hour), HostProtocol: "4.4"},
			{Name: "vm3", State: "revoked", Since: now.Add(-time.Hour), HostProtocol: "4.4", LastError: "revoked"},
		},
	}
	var b strings.Builder
	s.WriteText(&b, now)
	want := `cardshare relay serve, pid 77, running for 1h0m0s
state /home/me/.config/cardshare/relay, listening on [::]:7743
host native PC/SC (winscard.dll), native backend: protocol 4.6 (pcsc-lite 2.5.x)

GUEST  STATE         SINCE   CONNECTIONS      UP/DOWN          PROTOCOL  GUEST ADDRESS
vm1    up            1m0s    2 open, 9 total  1.2 kB / 4.0 kB  - → 4.4   192.168.122.5:40112
vm2    disconnected  1h0m0s  0 open, 0 total  0 B / 0 B        - → 4.4   -
vm3    revoked       1h0m0s  0 open, 0 total  0 B / 0 B        - → 4.4   -

vm1: reader policy: readers ["Yubico YubiKey*"], control denied

vm3: revoked
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestSizeSI(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1549: "1.5 kB", 12345: "12 kB",
		999_499: "999 kB", 999_500: "1.0 MB", 5_000_000_000: "5.0 GB"} {
		if got := sizeSI(n); got != want {
			t.Errorf("sizeSI(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestWriteTextQEMU(t *testing.T) {
	now := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	s := &StatusV1{
		Version: 1, Mode: ModeQEMUCCID, PID: 99, Started: now.Add(-time.Minute),
		Host: HostStatus{PCSCDSocket: "libpcsclite.so.1"},
		Guests: []GuestStatus{{Name: "win11", Kind: KindQEMUCCID, State: "connecting", Since: now.Add(-time.Second),
			Readers: []string{"Yubico*"}, Control: "deny", LastError: "EOF",
			Chardevs: []ChardevStatus{
				{Chardev: "unix:/run/cardshare/win11-ccid0.sock", QEMU: true, Reader: "Yubico YubiKey 00 00", Card: true, T0ForT1: true, APDUs: 12, Since: now.Add(-time.Minute)},
				{Chardev: "unix:/run/cardshare/win11-ccid1.sock (listening)", Since: now.Add(-time.Second), LastError: "EOF"},
			}}},
	}
	var b strings.Builder
	s.WriteText(&b, now)
	want := `cardshare qemu attach, pid 99, running for 1m0s
host PC/SC libpcsclite.so.1

QEMU CCID GUEST  STATE       SINCE  CHARDEV                                           QEMU       HOST READER           CARD                   APDUS
win11            connecting  1m0s   unix:/run/cardshare/win11-ccid0.sock              connected  Yubico YubiKey 00 00  present (T=0 for T=1)  12
win11            connecting  1s     unix:/run/cardshare/win11-ccid1.sock (listening)  waiting    -                     no card                0
win11: EOF
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// In up's document, after the SSH guests' table.
	s.Mode = ModeUp
	s.Guests = append(s.Guests, GuestStatus{Name: "devvm", State: "up", Since: now, HostProtocol: "4.4"})
	b.Reset()
	s.WriteText(&b, now)
	if !strings.Contains(b.String(), "\nQEMU CCID GUEST") || !strings.Contains(b.String(), "\ndevvm  up") || strings.Contains(b.String(), "reader policy") {
		t.Errorf("up with a ccid guest:\n%s", b.String())
	}
	j, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(j), `"kind":"qemu-ccid"`) || !strings.Contains(string(j), `"kind":"ssh","chardevs":[]`) {
		t.Errorf("JSON: %s %v", j, err)
	}
}
