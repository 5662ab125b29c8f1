package vcard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"control", []byte{0, 1, 4}, []byte{4}, nil},
		{"apdu", []byte{0, 4, 0, 0, 0, 0}, []byte{0, 0, 0, 0}, nil},
		{"empty payload", []byte{0, 0}, []byte{}, nil},
		{"trailing bytes stay", []byte{0, 1, 1, 0, 1}, []byte{1}, nil},
		{"clean EOF", nil, nil, io.EOF},
		{"EOF in length", []byte{0}, nil, io.ErrUnexpectedEOF},
		{"EOF before payload", []byte{0, 2}, nil, io.ErrUnexpectedEOF},
		{"EOF in payload", []byte{0, 2, 1}, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		got, err := readFrame(bytes.NewReader(tt.in), nil)
		if !errors.Is(err, tt.wantErr) || (err == nil && !bytes.Equal(got, tt.want)) {
			t.Errorf("%s: readFrame(% X) = % X, %v; want % X, %v", tt.name, tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 16)
	got, err := readFrame(bytes.NewReader([]byte{0, 3, 1, 2, 3}), buf)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &buf[:1][0] {
		t.Error("readFrame allocated although the buffer was large enough")
	}
	long := append([]byte{0x01, 0x00}, make([]byte, 256)...)
	got, err = readFrame(bytes.NewReader(long), buf)
	if err != nil || len(got) != 256 {
		t.Errorf("readFrame of 256 bytes = %d bytes, %v", len(got), err)
	}
}

// fakeVPCD plays vpcd on the other end of a connection to a Card. Like
// Debian's vpcd it writes the length and the payload of a frame separately.
type fakeVPCD struct {
	t    testing.TB
	conn net.Conn
}

func (v fakeVPCD) send(payload []byte) {
	v.t.Helper()
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(len(payload)))
	if _, err := v.conn.Write(hdr[:]); err != nil {
		v.t.Fatalf("vpcd: write length: %v", err)
	}
	if _, err := v.conn.Write(payload); err != nil {
		v.t.Fatalf("vpcd: write payload: %v", err)
	}
}

func (v fakeVPCD) recv() []byte {
	v.t.Helper()
	v.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := readFrame(v.conn, nil)
	if err != nil {
		v.t.Fatalf("vpcd: read answer: %v", err)
	}
	return b
}

// transmit sends a command APDU and returns the response APDU.
func (v fakeVPCD) transmit(cmd string) []byte {
	v.t.Helper()
	v.send(apdu(v.t, cmd))
	return v.recv()
}

// serve runs c.Serve in the background and returns a channel with its result.
func serve(ctx context.Context, c *Card) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	return done
}

func wait(t testing.TB, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func TestServeSession(t *testing.T) {
	cardEnd, vpcdEnd := net.Pipe()
	defer vpcdEnd.Close()
	c, err := New(cardEnd)
	if err != nil {
		t.Fatal(err)
	}
	done := serve(context.Background(), c)
	v := fakeVPCD{t, vpcdEnd}

	// What pcscd does when it notices the card: presence check, power up.
	v.send([]byte{ctrlATR})
	if got := v.recv(); string(got) != ATR {
		t.Fatalf("ATR = % X, want % X", got, ATR)
	}
	v.send([]byte{ctrlPowerOn})
	v.send([]byte{ctrlATR})
	if got := v.recv(); string(got) != ATR {
		t.Fatalf("ATR after power on = % X, want % X", got, ATR)
	}
	if got := v.transmit(selectHello); !bytes.Equal(got, []byte{0x90, 0x00}) {
		t.Fatalf("SELECT = % X, want 90 00", got)
	}
	if got := v.transmit("00 00 00 00"); string(got) != Greeting+"\x90\x00" {
		t.Fatalf("hello = %q, want %q", got, Greeting+"\x90\x00")
	}
	// Power off and unknown control commands get no answer; the next answer
	// must belong to the next command.
	v.send([]byte{ctrlPowerOff})
	v.send([]byte{0x07})
	v.send([]byte{})
	v.send([]byte{ctrlPowerOn})
	if got := v.transmit("00 00 00 00"); !bytes.Equal(got, []byte{0x69, 0x85}) {
		t.Fatalf("hello after power cycle = % X, want 69 85", got)
	}
	v.transmit(selectHello)
	v.send([]byte{ctrlReset})
	if got := v.transmit("00 00 00 00"); !bytes.Equal(got, []byte{0x69, 0x85}) {
		t.Fatalf("hello after reset = % X, want 69 85", got)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

// With a delay set, each APDU is answered no sooner than the delay after it
// arrived, and the answers are unchanged.
func TestServeDelay(t *testing.T) {
	cardEnd, vpcdEnd := net.Pipe()
	defer vpcdEnd.Close()
	c, err := New(cardEnd)
	if err != nil {
		t.Fatal(err)
	}
	const delay = 30 * time.Millisecond
	c.SetDelay(delay)
	done := serve(context.Background(), c)
	v := fakeVPCD{t, vpcdEnd}
	v.send([]byte{ctrlATR})
	if got := v.recv(); string(got) != ATR {
		t.Fatalf("ATR = % X, want % X", got, ATR)
	}
	for _, tt := range []struct{ cmd, want string }{
		{selectHello, "\x90\x00"},
		{"00 00 00 00", Greeting + "\x90\x00"},
	} {
		start := time.Now()
		if got := v.transmit(tt.cmd); string(got) != tt.want {
			t.Fatalf("%s = % X, want % X", tt.cmd, got, tt.want)
		}
		if d := time.Since(start); d < delay {
			t.Errorf("%s answered after %v, want at least %v", tt.cmd, d, delay)
		}
	}
	c.SetDelay(0)
	if got := v.transmit("00 00 00 00"); string(got) != Greeting+"\x90\x00" {
		t.Fatalf("hello without delay = %q", got)
	}
	c.Close()
	if err := wait(t, done); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}

func TestServeEnds(t *testing.T) {
	t.Run("vpcd closes", func(t *testing.T) {
		cardEnd, vpcdEnd := net.Pipe()
		c, _ := New(cardEnd)
		defer c.Close()
		done := serve(context.Background(), c)
		vpcdEnd.Close()
		if err := wait(t, done); !errors.Is(err, io.EOF) {
			t.Errorf("Serve = %v, want io.EOF", err)
		}
	})
	t.Run("vpcd closes inside a frame", func(t *testing.T) {
		cardEnd, vpcdEnd := net.Pipe()
		c, _ := New(cardEnd)
		defer c.Close()
		done := serve(context.Background(), c)
		vpcdEnd.Write([]byte{0, 5, 0})
		vpcdEnd.Close()
		err := wait(t, done)
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "vcard: ") {
			t.Errorf("Serve = %v, want a vcard error wrapping io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("context", func(t *testing.T) {
		cardEnd, vpcdEnd := net.Pipe()
		defer vpcdEnd.Close()
		c, _ := New(cardEnd)
		ctx, cancel := context.WithCancel(context.Background())
		done := serve(ctx, c)
		cancel()
		if err := wait(t, done); !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	})
}

// TestServeTCPNoStall runs the card over loopback TCP against a vpcd that
// behaves like Debian's: Nagle on, length and payload in two writes. Without
// quick ACKs every round trip would wait for the delayed ACK (40 ms).
func TestServeTCPNoStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()

	ctx := context.Background()
	c, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := serve(ctx, c)

	conn, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetNoDelay(false); err != nil {
		t.Fatal(err)
	}
	v := fakeVPCD{t, conn}
	v.transmit(selectHello)

	const rounds = 200
	slow := 0
	var worst time.Duration
	for range rounds {
		start := time.Now()
		if got := v.transmit("00 00 00 00"); string(got) != Greeting+"\x90\x00" {
			t.Fatalf("hello = %q", got)
		}
		d := time.Since(start)
		worst = max(worst, d)
		if d > 20*time.Millisecond {
			slow++
		}
	}
	t.Logf("%d round trips, %d over 20 ms, worst %v", rounds, slow, worst)
	if slow > rounds/20 {
		t.Errorf("%d of %d round trips took over 20 ms: delayed-ACK stall", slow, rounds)
	}

	c.Close()
	if err := wait(t, done); err != nil {
		t.Errorf("Serve after Close = %v", err)
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(context.Background(), addr)
	if err == nil || !strings.HasPrefix(err.Error(), "vcard: dial vpcd: ") {
		t.Errorf("Dial to a closed port = %v, want a vcard dial error", err)
	}
}
