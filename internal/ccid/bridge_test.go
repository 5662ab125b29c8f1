package ccid

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/iso7816"
	"github.com/cardshare/cardshare/internal/vscard"
)

var (
	atrT0  = []byte{0x3b, 0x02, 0x14, 0x50} // internal/vcard's card: T=0
	atrYub = []byte{0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0,
		0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40} // a YubiKey 5: T=1 only
	selectHello = []byte{0x00, 0xa4, 0x04, 0x00, 0x0a, 0xa0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0c, 0x06, 0x01}
	hello       = []byte{0x00, 0x00, 0x00, 0x00}
	helloResp   = append([]byte("Hello world!"), 0x90, 0x00)
)

// atrT1Only is a T=1-only card's ATR: TS 3B, T0 89 (TD1, 9 historical
// bytes), TD1 01 (T=1, nothing follows), "cardshare", TCK. YubiKeys have
// such ATRs; QEMU 7.2's usb-ccid takes only T=0.
var atrT1Only = func() []byte {
	atr := append([]byte{0x3b, 0x89, 0x01}, "cardshare"...)
	var tck byte
	for _, b := range atr[1:] {
		tck ^= b
	}
	return append(atr, tck)
}()

func sockDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// testLogger writes the bridge's log to the test's.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// startBridge runs Attach until the test ends and returns its result
// channel.
func startBridge(t *testing.T, host Host, cfg *Config) <-chan error {
	t.Helper()
	cfg.Logger = testLogger(t)
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	if cfg.RemovalGap == 0 {
		cfg.RemovalGap = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { done <- Attach(ctx, host, cfg) })
	t.Cleanup(func() {
		cancel()
		wg.Wait() // Attach leaves nothing behind
	})
	return done
}

// qemuServer is a fake QEMU with server=on: it listens, the bridge dials.
func qemuServer(t *testing.T) (Endpoint, func() *fakeQEMU) {
	path := filepath.Join(sockDir(t), "ccid.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return Endpoint{Network: "unix", Address: path}, func() *fakeQEMU {
		t.Helper()
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		q := newFakeQEMU(t, conn)
		q.open()
		return q
	}
}

func TestHelloAndPlugging(t *testing.T) {
	h := newFakeHost()
	r := h.addReader("Virtual PCD 00 00", atrT0)
	h.addReader("Other Reader 00 00", atrT0) // does not match
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Reader: "Virtual PCD*", Chardevs: []Endpoint{ep}})
	q := accept()

	if name := q.expect(vscard.ReaderAdd); string(name) != "Virtual PCD 00 00" {
		t.Fatalf("ReaderAdd %q", name)
	}
	if atr := q.expect(vscard.ATR); !bytes.Equal(atr, atrT0) {
		t.Fatalf("ATR % x, want the card's (it offers T=0)", atr)
	}
	if got := q.transmit(selectHello); !bytes.Equal(got, []byte{0x90, 0}) {
		t.Fatalf("select: % x", got)
	}
	if got := q.transmit(hello); !bytes.Equal(got, helloResp) {
		t.Fatalf("hello: % x", got)
	}

	h.remove(r)
	q.expect(vscard.CardRemove)
	h.insert(r, atrT0)
	q.expect(vscard.ATR)
	h.unplug(r.name)
	q.expect(vscard.CardRemove)
	q.expect(vscard.ReaderRemove)

	// A reader plugged later that matches takes the free chardev.
	h.addReader("Virtual PCD 00 01", atrT0)
	if name := q.expect(vscard.ReaderAdd); string(name) != "Virtual PCD 00 01" {
		t.Fatalf("ReaderAdd %q", name)
	}
	q.expect(vscard.ATR)
	if got := q.transmit(hello); !bytes.Equal(got, []byte{0x6d, 0}) && !bytes.Equal(got, helloResp) {
		t.Fatalf("hello on the new reader: % x", got)
	}
}

// The bridge listens, QEMU connects; QEMU restarts and connects again, and
// gets the reader and the card again.
func TestListenAndQEMURestart(t *testing.T) {
	h := newFakeHost()
	h.addReader("Virtual PCD 00 00", atrT0)
	path := filepath.Join(sockDir(t), "ccid.sock")
	startBridge(t, h, &Config{Chardevs: []Endpoint{{Network: "unix", Address: path, Listen: true}}})
	dial := func() *fakeQEMU {
		var conn net.Conn
		var err error
		for range 100 {
			if conn, err = net.Dial("unix", path); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		q := newFakeQEMU(t, conn)
		q.open()
		return q
	}
	for run := range 2 {
		q := dial()
		q.expect(vscard.ReaderAdd)
		q.expect(vscard.ATR)
		q.transmit(selectHello)
		if got := q.transmit(hello); !bytes.Equal(got, helloResp) {
			t.Fatalf("run %d: hello: % x", run, got)
		}
		q.conn.Close() // QEMU stops
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
}

// A QEMU that is not there yet: the bridge retries until it listens.
func TestDialRetries(t *testing.T) {
	h := newFakeHost()
	h.addReader("R", atrT0)
	path := filepath.Join(sockDir(t), "ccid.sock")
	startBridge(t, h, &Config{Chardevs: []Endpoint{{Network: "unix", Address: path}}})
	time.Sleep(100 * time.Millisecond)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	q := newFakeQEMU(t, conn)
	q.open()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
}

// A chardev peer that is not QEMU: one error, nothing sent to the card.
func TestNotQEMU(t *testing.T) {
	for name, first := range map[string][]byte{
		"wrong magic": vscard.AppendMessage(nil, vscard.Init, vscard.UndefinedReaderID,
			vscard.InitPayload{Magic: [4]byte{'X', 'X', 'X', 'X'}, Version: 2}.Append(nil)),
		"ssh banner": []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
		"apdu first": vscard.AppendMessage(nil, vscard.APDU, 0, hello),
	} {
		t.Run(name, func(t *testing.T) {
			h := newFakeHost()
			h.addReader("R", atrT0)
			path := filepath.Join(sockDir(t), "ccid.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := startBridge(t, h, &Config{Chardevs: []Endpoint{{Network: "unix", Address: path}}, InitTimeout: time.Second})
			conn, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(first)
			conn.Write(vscard.AppendMessage(nil, vscard.APDU, 0, hello))
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotQEMU) {
					t.Fatalf("Attach: %v, want ErrNotQEMU", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Attach did not give up")
			}
			if log := h.cardLog(); len(log) != 0 {
				t.Fatalf("the card got commands: %v", log)
			}
		})
	}
}

// A T=1-only card: the guest gets an ATR with T=0 in front and T=0's
// rules: a command without Le that yields data gets 61xx, GET RESPONSE
// fetches it, a wrong Le gets 6Cxx.
func TestT1OnlyCard(t *testing.T) {
	h := newFakeHost()
	h.addReader("Yubico YubiKey OTP+FIDO+CCID 00 00", atrYub)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Reader: "Yubico*", Chardevs: []Endpoint{ep}})
	q := accept()
	q.expect(vscard.ReaderAdd)
	atr := q.expect(vscard.ATR)
	a, err := iso7816.ParseATR(atr)
	if err != nil || !a.T0 || !a.T1 {
		t.Fatalf("guest ATR % x: %+v %v", atr, a, err)
	}
	if !bytes.HasSuffix(atr[:len(atr)-1], atrYub[9:len(atrYub)-1]) {
		t.Fatalf("guest ATR % x lost the historical bytes", atr)
	}
	q.transmit(selectHello)
	if got := q.transmit(hello); !bytes.Equal(got, []byte{0x61, 12}) {
		t.Fatalf("hello without Le: % x, want 61 0C", got)
	}
	if got := q.transmit([]byte{0, 0xc0, 0, 0, 0x20}); !bytes.Equal(got, []byte{0x6c, 12}) {
		t.Fatalf("GET RESPONSE Le 20: % x, want 6C 0C", got)
	}
	if got := q.transmit([]byte{0, 0xc0, 0, 0, 5}); !bytes.Equal(got, append([]byte("Hello"), 0x61, 7)) {
		t.Fatalf("GET RESPONSE Le 5: % x", got)
	}
	if got := q.transmit([]byte{0, 0xc0, 0, 0, 7}); !bytes.Equal(got, append([]byte(" world!"), 0x90, 0)) {
		t.Fatalf("GET RESPONSE Le 7: % x", got)
	}
	// With Le the response comes whole.
	if got := q.transmit([]byte{0, 0, 0, 0, 0}); !bytes.Equal(got, helloResp) {
		t.Fatalf("hello with Le: % x", got)
	}
}

// Responses longer than QEMU's CCID message go out through GET RESPONSE.
func TestLongResponse(t *testing.T) {
	h := newFakeHost()
	h.addReader("R", atrT0)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Chardevs: []Endpoint{ep}})
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	// 0xB0 with P2=75: 600 bytes, Le 00 (extended would be the same).
	got := q.transmit([]byte{0, 0xb0, 0, 75, 0})
	var all []byte
	for len(got) >= 2 && got[len(got)-2] == 0x61 {
		if len(got) > maxGuestResponse {
			t.Fatalf("piece of %d bytes", len(got))
		}
		all = append(all, got[:len(got)-2]...)
		got = q.transmit([]byte{0, 0xc0, 0, 0, got[len(got)-1]})
	}
	all = append(all, got...)
	if len(all) != 602 || !bytes.HasSuffix(all, []byte{0x90, 0}) {
		t.Fatalf("got %d bytes ending % x", len(all), all[len(all)-2:])
	}
}

// Another program resets the card: the guest sees a removal and an
// insertion, and its command is not answered from the reset card.
func TestResetByOther(t *testing.T) {
	h := newFakeHost()
	r := h.addReader("R", atrT0)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Chardevs: []Endpoint{ep}})
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit(selectHello)
	h.reset(r)
	q.send(vscard.APDU, hello)
	q.expect(vscard.Error) // the command fails
	q.expect(vscard.CardRemove)
	q.expect(vscard.ATR)
	if got := q.transmit(selectHello); !bytes.Equal(got, []byte{0x90, 0}) {
		t.Fatalf("after reset: % x", got)
	}
	if n := len(h.cardLog()); n != 2 {
		t.Fatalf("card ran %d commands, want 2 (the one after the reset must not run)", n)
	}
}

// A host program's transaction never lands inside a burst of guest
// commands, and the guest's burst waits for the host's transaction.
func TestTransactionsKeepSequencesApart(t *testing.T) {
	h := newFakeHost()
	r := h.addReader("R", atrT0)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Chardevs: []Endpoint{ep}, IdleRelease: time.Second}) // generous: the machine may be loaded
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)

	hostProg := &fakeCard{h: h, r: r, events: r.events, who: "host"}
	q.transmit(selectHello) // the guest holds the card now
	hostDone := make(chan struct{})
	go func() {
		defer close(hostDone)
		hostProg.BeginTransaction()
		buf := make([]byte, 64)
		hostProg.Transmit([]byte{0, 0xa4, 4, 0}, buf)
		hostProg.Transmit([]byte{0, 0x01, 0, 0}, buf)
		hostProg.EndTransaction()
	}()
	for range 5 { // a burst, 20 ms apart: the host program waits
		time.Sleep(20 * time.Millisecond)
		q.transmit(hello)
	}
	<-hostDone // after the idle release
	log := h.cardLog()
	want := []string{"guest:A4", "guest:00", "guest:00", "guest:00", "guest:00", "guest:00", "host:A4", "host:01"}
	if !slicesEqual(log, want) {
		t.Fatalf("card saw %v, want %v", log, want)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Exclusive: the bridge holds the card while present; no transaction.
func TestExclusive(t *testing.T) {
	h := newFakeHost()
	h.addReader("R", atrT0)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Chardevs: []Endpoint{ep}, Exclusive: true})
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit(selectHello)
	if got := q.transmit(hello); !bytes.Equal(got, helloResp) {
		t.Fatalf("hello: % x", got)
	}
}

func TestListenRefusesFiles(t *testing.T) {
	path := filepath.Join(sockDir(t), "file")
	os.WriteFile(path, []byte("keep"), 0o644)
	if _, err := New(newFakeHost(), &Config{Chardevs: []Endpoint{{Network: "unix", Address: path, Listen: true}}}); err == nil {
		t.Fatal("listened over a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatal("file replaced")
	}
	// A live listener is not taken over; a stale socket is.
	live := filepath.Join(sockDir(t), "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := New(newFakeHost(), &Config{Chardevs: []Endpoint{{Network: "unix", Address: live, Listen: true}}}); err == nil {
		t.Fatal("took over a live socket")
	}
}

func TestConfig(t *testing.T) {
	if err := (&Config{}).Validate(); err == nil {
		t.Error("no chardev accepted")
	}
	if err := (&Config{Reader: "[", Chardevs: []Endpoint{{}}}).Validate(); err == nil {
		t.Error("bad glob accepted")
	}
	for _, tc := range []struct {
		in     string
		listen bool
		ok     bool
	}{
		{"unix:/run/vm/ccid.sock", false, true},
		{"/run/vm/ccid.sock", true, true},
		{"tcp:127.0.0.1:7000", false, true},
		{"tcp:localhost:7000", true, true},
		{"tcp:0.0.0.0:7000", true, false},
		{"tcp:192.0.2.1:7000", false, true},
		{"udp:x", false, false},
		{"unix:", false, false},
	} {
		if _, err := ParseEndpoint(tc.in, tc.listen); (err == nil) != tc.ok {
			t.Errorf("ParseEndpoint(%q, %v): %v", tc.in, tc.listen, err)
		}
	}
}

func TestStatus(t *testing.T) {
	h := newFakeHost()
	h.addReader("Yubico YubiKey", atrYub)
	ep, accept := qemuServer(t)
	b, err := New(h, &Config{Chardevs: []Endpoint{ep, {Network: "unix", Address: filepath.Join(sockDir(t), "none.sock")}},
		RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit(hello)
	st := b.Status()
	if len(st) != 2 || !st[0].QEMU || st[0].Reader != "Yubico YubiKey" || !st[0].Card || !st[0].T0ForT1 || st[0].APDUs != 1 {
		t.Fatalf("status %+v", st)
	}
	if st[1].QEMU || st[1].Reader != "" || st[1].Chardev != "unix:"+filepath.Join(filepath.Dir(st[1].Chardev[5:]), "none.sock") {
		t.Fatalf("status of the unreachable chardev %+v", st[1])
	}
	q.conn.Close()
	for deadline := time.Now().Add(5 * time.Second); b.Status()[0].QEMU; {
		if time.Now().After(deadline) {
			t.Fatal("QEMU still shown connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.Status()[0]; st.LastError == "" || st.Card {
		t.Fatalf("after QEMU left: %+v", st)
	}
}

// A quiet host (GetStatusChange timing out) must not look like a removal.
func TestQuietHost(t *testing.T) {
	h := &timeoutHost{fakeHost: newFakeHost()}
	h.addReader("R", atrT0)
	ep, accept := qemuServer(t)
	startBridge(t, h, &Config{Chardevs: []Endpoint{ep}})
	q := accept()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, err := q.r.Next(); err == nil {
		t.Fatalf("got %v after timeouts", m.Type)
	}
}

// timeoutHost's GetStatusChange waits at most 20 ms, however long asked.
type timeoutHost struct{ *fakeHost }

func (h *timeoutHost) EstablishContext() (HostContext, error) {
	c, err := h.fakeHost.EstablishContext()
	return timeoutContext{c}, err
}

type timeoutContext struct{ HostContext }

func (c timeoutContext) GetStatusChange(_ time.Duration, states []ReaderState) error {
	return c.HostContext.GetStatusChange(20*time.Millisecond, states)
}

// A TCP chardev (QEMU with server=on on loopback).
func TestTCPChardev(t *testing.T) {
	h := newFakeHost()
	h.addReader("R", atrT0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	startBridge(t, h, &Config{Chardevs: []Endpoint{{Network: "tcp", Address: ln.Addr().String()}}})
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	q := newFakeQEMU(t, conn)
	q.open()
	q.expect(vscard.ReaderAdd)
	q.expect(vscard.ATR)
	q.transmit(selectHello)
	start := time.Now()
	for range 50 {
		if got := q.transmit(hello); !bytes.Equal(got, helloResp) {
			t.Fatalf("hello: % x", got)
		}
	}
	t.Logf("50 round trips over TCP in %v", time.Since(start))
}
