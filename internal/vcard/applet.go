package vcard

import "bytes"

// ATR is the answer to reset the card reports: TS 3B (direct convention), T0 02
// (no interface bytes, so T=0; two historical bytes), then the historical bytes
// 14 50. pcsc-protocol.md §10.3 shows pcscd reporting it.
const ATR = "\x3b\x02\x14\x50"

// HelloAID is the AID of the hello-world applet, selected with
// 00 A4 04 00 0A followed by these bytes.
const HelloAID = "\xa0\x00\x00\x00\x62\x03\x01\x0c\x06\x01"

// Greeting is the response data of the hello-world applet's instruction 00.
const Greeting = "Hello world!"

// Status words (ISO/IEC 7816-4:2020 §5.6, tables 5 and 6).
const (
	swOK                          = 0x9000
	swWrongLength                 = 0x6700
	swLogicalChannelNotSupported  = 0x6881
	swSecureMessagingNotSupported = 0x6882
	swChainingNotSupported        = 0x6884
	swConditionsNotSatisfied      = 0x6985
	swNotFound                    = 0x6a82
	swIncorrectP1P2               = 0x6a86
	swWrongLe                     = 0x6c00 // low byte: the exact length available
	swINSNotSupported             = 0x6d00
	swCLANotSupported             = 0x6e00
)

// Instructions the card knows.
const (
	insHello  = 0x00
	insSelect = 0xa4
)

// command is a parsed short command APDU (ISO/IEC 7816-4 §5.1). le is the
// expected response length, 0 when the command has no Le field; an Le byte of
// 00 means 256.
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
	le               int
}

// parseCommand splits a short APDU into its fields. It reports false for
// anything that is not one of the four short cases, including extended-length
// APDUs, which this card does not support.
func parseCommand(apdu []byte) (command, bool) {
	if len(apdu) < 4 {
		return command{}, false
	}
	c := command{cla: apdu[0], ins: apdu[1], p1: apdu[2], p2: apdu[3]}
	body := apdu[4:]
	switch {
	case len(body) == 0: // case 1
	case len(body) == 1: // case 2
		c.le = shortLe(body[0])
	case body[0] == 0: // Lc 00 introduces an extended length
		return command{}, false
	case len(body) == 1+int(body[0]): // case 3
		c.data = body[1:]
	case len(body) == 2+int(body[0]): // case 4
		c.data = body[1 : len(body)-1]
		c.le = shortLe(body[len(body)-1])
	default:
		return command{}, false
	}
	return c, true
}

func shortLe(b byte) int {
	if b == 0 {
		return 256
	}
	return int(b)
}

// applet is the hello-world applet and the little card OS around it.
type applet struct {
	selected bool
}

// reset is what power off, power on and a warm reset do: no applet stays
// selected.
func (a *applet) reset() { a.selected = false }

// process executes one command APDU and appends the response APDU to out.
func (a *applet) process(out, apdu []byte) []byte {
	c, ok := parseCommand(apdu)
	switch {
	case len(apdu) < 4:
		return appendSW(out, swWrongLength)
	case apdu[0]&0x80 != 0 || apdu[0]&0xe0 == 0x20:
		// Proprietary classes (FF is reserved for PPS) and the RFU classes
		// 20 to 3F (ISO/IEC 7816-4 §5.4.1).
		return appendSW(out, swCLANotSupported)
	case apdu[0]&0x40 != 0:
		// The further interindustry classes 40 to 7F exist only to address
		// logical channels 4 to 19.
		return appendSW(out, swLogicalChannelNotSupported)
	case apdu[0]&0x10 != 0:
		return appendSW(out, swChainingNotSupported)
	case apdu[0]&0x0c != 0:
		return appendSW(out, swSecureMessagingNotSupported)
	case apdu[0]&0x03 != 0:
		return appendSW(out, swLogicalChannelNotSupported)
	case !ok:
		return appendSW(out, swWrongLength)
	}

	switch c.ins {
	case insSelect:
		return a.selectApplet(out, c)
	case insHello:
		if !a.selected {
			return appendSW(out, swConditionsNotSatisfied)
		}
		if len(c.data) != 0 {
			return appendSW(out, swWrongLength)
		}
		if c.le != 0 && c.le < len(Greeting) {
			return appendSW(out, swWrongLe|len(Greeting))
		}
		out = append(out, Greeting...)
		return appendSW(out, swOK)
	default:
		return appendSW(out, swINSNotSupported)
	}
}

// selectApplet handles SELECT by DF name (P1 04) with P2 00 (first or only
// occurrence, FCI requested) or 0C (no response data). The applet returns no
// FCI, as the JavaCard hello-world samples do. An unknown AID leaves the
// current selection as it was.
func (a *applet) selectApplet(out []byte, c command) []byte {
	if c.p1 != 0x04 || (c.p2 != 0x00 && c.p2 != 0x0c) {
		return appendSW(out, swIncorrectP1P2)
	}
	if !bytes.Equal(c.data, []byte(HelloAID)) {
		return appendSW(out, swNotFound)
	}
	a.selected = true
	return appendSW(out, swOK)
}

func appendSW(out []byte, sw int) []byte {
	return append(out, byte(sw>>8), byte(sw))
}
