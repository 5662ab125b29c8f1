package scard_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
	"github.com/cardshare/cardshare/internal/testenv"
)

var (
	selectApplet = []byte{0x00, 0xA4, 0x04, 0x00, 0x0A, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0C, 0x06, 0x01}
	helloAPDU    = []byte{0x00, 0x00, 0x00, 0x00}
)

// TestLibpcscliteRealPCSCD drives the real libpcsclite through purego
// against a private pcscd with vpcd and the test card.
func TestLibpcscliteRealPCSCD(t *testing.T) {
	p := testenv.StartPCSCD(t)
	scardtest.UseSocket(t, p.Socket)
	lib, err := scard.Open()
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := lib.EstablishContext(scard.ScopeSystem)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.ReleaseContext(ctx)
	readers, err := lib.ListReaders(ctx)
	if err != nil || len(readers) != 2 || readers[0] != testenv.VPCDReader {
		t.Fatalf("ListReaders = %q, %v", readers, err)
	}

	states := []scard.ReaderState{{Reader: testenv.VPCDReader}, {Reader: scard.PnPNotification}}
	if err := lib.GetStatusChange(ctx, 0, states); err != nil {
		t.Fatal(err)
	}
	if states[0].EventState&scard.StateEmpty == 0 {
		t.Fatalf("reader state %#x, want empty", states[0].EventState)
	}
	// A blocking wait sees the card arrive.
	done := make(chan error, 1)
	go func() {
		states[0].CurrentState = states[0].EventState
		states[1].CurrentState = states[1].EventState
		done <- lib.GetStatusChange(ctx, 10*time.Second, states)
	}()
	time.Sleep(200 * time.Millisecond)
	p.InsertCard(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if states[0].EventState&scard.StatePresent == 0 || len(states[0].ATR) == 0 {
		t.Fatalf("after insert: state %#x ATR % x", states[0].EventState, states[0].ATR)
	}

	card, proto, err := lib.Connect(ctx, testenv.VPCDReader, scard.ShareShared, scard.ProtocolT0|scard.ProtocolT1)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Disconnect(card, scard.DispositionLeave)
	if err := lib.BeginTransaction(card); err != nil {
		t.Fatal(err)
	}
	recv := make([]byte, 258)
	n, _, err := lib.Transmit(card, scard.IORequest{Protocol: proto}, selectApplet, recv)
	if err != nil || !bytes.Equal(recv[:n], []byte{0x90, 0x00}) {
		t.Fatalf("SELECT: % x, %v", recv[:n], err)
	}
	n, _, err = lib.Transmit(card, scard.IORequest{Protocol: proto}, helloAPDU, recv)
	if err != nil || string(recv[:n]) != "Hello world!\x90\x00" {
		t.Fatalf("hello: %q, %v", recv[:n], err)
	}
	if _, _, err := lib.Transmit(card, scard.IORequest{Protocol: proto}, helloAPDU, recv[:1]); !errors.Is(err, scard.InsufficientBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	if err := lib.EndTransaction(card, scard.DispositionLeave); err != nil {
		t.Fatal(err)
	}
	st, err := lib.Status(card)
	if err != nil || st.Reader != testenv.VPCDReader || st.State&scard.StatusPresent == 0 || !bytes.Equal(st.ATR, states[0].ATR) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if _, err := lib.Control(card, scard.FeatureRequest, nil, make([]byte, 256)); err != nil && !errors.Is(err, scard.UnsupportedFeature) {
		t.Errorf("Control: %v", err)
	}
	if _, err := lib.GetAttrib(card, 0x00090303, make([]byte, 64)); err != nil && !errors.Is(err, scard.UnsupportedFeature) {
		t.Errorf("GetAttrib: %v", err)
	}
	// Cancel ends a blocking wait on the same context.
	go func() {
		states[0].CurrentState = states[0].EventState
		states[1].CurrentState = states[1].EventState
		done <- lib.GetStatusChange(ctx, scard.Infinite, states)
	}()
	time.Sleep(300 * time.Millisecond)
	if err := lib.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, scard.Cancelled) {
		t.Fatalf("wait after Cancel: %v", err)
	}
}
