package pcsc

import (
	"encoding/binary"
	"testing"
)

// The sizes pcsc-wirecheck asserts (pcsc-lite 2.5.1
// src/pcsc-wirecheck-gen.c:105-250), for the Go structs.
func TestStructSizes(t *testing.T) {
	for _, tt := range []struct {
		v    any
		size int
	}{
		{VersionStruct{}, VersionSize}, {EstablishStruct{}, EstablishSize}, {ReleaseStruct{}, ReleaseSize},
		{ConnectStruct{}, ConnectSize}, {ReconnectStruct{}, ReconnectSize}, {DisconnectStruct{}, DisconnectSize},
		{CardStruct{}, BeginSize}, {EndStruct{}, EndSize}, {CancelStruct{}, CancelSize}, {CardStruct{}, StatusSize},
		{TransmitStruct{}, TransmitSize}, {ControlStruct{}, ControlSize}, {GetSetStruct{}, GetSetSize},
		{WaitStruct{}, WaitSize}, {ReaderEventsStruct{}, ReaderEventsSize}, {ReaderState{}, ReaderStateSize},
	} {
		if got := binary.Size(tt.v); got != tt.size {
			t.Errorf("%T: %d bytes, want %d", tt.v, got, tt.size)
		}
	}
	for cmd, c := range commands {
		if c.name == "" {
			continue
		}
		if s := newStruct(uint32(cmd)); s != nil && binary.Size(s) != c.body {
			t.Errorf("%s: struct %T of %d bytes, table says %d", c.name, s, binary.Size(s), c.body)
		}
		if r := NewReply(uint32(cmd)); r != nil && binary.Size(r) != c.reply {
			t.Errorf("%s: reply %T of %d bytes, table says %d", c.name, r, binary.Size(r), c.reply)
		}
	}
}

// The offsets the proxy uses agree with the structs.
func TestOffsets(t *testing.T) {
	at := func(v any, off int) uint32 {
		b, err := binary.Append(nil, le, v)
		if err != nil {
			t.Fatal(err)
		}
		return le.Uint32(b[off:])
	}
	const x = 0xA1B2C3D4
	checks := []struct {
		name string
		v    any
		off  int
	}{
		{"establish hContext", &EstablishStruct{Context: x}, OffEstablishContext},
		{"release hContext", &ReleaseStruct{Context: x}, OffReleaseContext},
		{"connect hContext", &ConnectStruct{Context: x}, offConnectContext},
		{"connect hCard", &ConnectStruct{Card: x}, OffConnectCard},
		{"connect protocol", &ConnectStruct{ActiveProtocol: x}, OffConnectProtocol},
		{"transmit cbSendLength", &TransmitStruct{SendLength: x}, OffTransmitSendLen},
		{"transmit pcbRecvLength", &TransmitStruct{RecvLength: x}, offTransmitRecvLen},
		{"control cbSendLength", &ControlStruct{SendLength: x}, OffControlSendLen},
		{"control dwBytesReturned", &ControlStruct{BytesReturned: x}, OffControlReturned},
		{"getset cbAttrLen", &GetSetStruct{AttrLen: x}, offGetSetAttrLen},
		{"cancel hContext", &CancelStruct{Context: x}, OffCancelContext},
		{"reader eventCounter", &ReaderState{EventCounter: x}, offStateEvents},
		{"reader state", &ReaderState{State: x}, offStateState},
		{"reader sharing", &ReaderState{Sharing: -0x5E4D3C2C}, offStateSharing},
		{"reader ATR", &ReaderState{ATR: [MaxATRSize]byte{0xD4, 0xC3, 0xB2, 0xA1}}, offStateATR},
		{"reader padding", &ReaderState{Pad: [3]byte{0xD4, 0xC3, 0xB2}, ATRLength: 0xA1}, offStatePad},
		{"reader protocol", &ReaderState{Protocol: x}, offStateProtocol},
		{"reader cardAtrLength", &ReaderState{ATRLength: x}, offStateATRLen},
	}
	for _, c := range checks {
		if got := at(c.v, c.off); got != x {
			t.Errorf("%s at %d: %#x", c.name, c.off, got)
		}
	}
	for _, v := range []any{&ReconnectStruct{Card: x}, &DisconnectStruct{Card: x}, &CardStruct{Card: x},
		&TransmitStruct{Card: x}, &ControlStruct{Card: x}, &GetSetStruct{Card: x}} {
		if got := at(v, OffCardHandle); got != x {
			t.Errorf("%T hCard: %#x", v, got)
		}
	}
	// rv is the last field of every struct.
	for _, v := range []any{&EstablishStruct{RV: x}, &ConnectStruct{RV: x}, &TransmitStruct{RV: x},
		&ControlStruct{RV: x}, &GetSetStruct{RV: x}, &VersionStruct{RV: x}, &WaitStruct{RV: x}} {
		if got := at(v, binary.Size(v)-4); got != x {
			t.Errorf("%T rv: %#x", v, got)
		}
	}
}
