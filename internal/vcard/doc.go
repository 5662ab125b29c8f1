// Package vcard is a virtual smart card for tests: it speaks the protocol of
// vsmartcard's vpcd reader driver, so a real pcscd sees a card in a real reader
// ("Virtual PCD 00 00") and real libpcsclite clients can talk to it.
//
// The card is a TCP client of vpcd. Dial connects it (the card is inserted);
// Close disconnects it (the card is removed). Serve answers vpcd until then.
//
// # Wire protocol
//
// Both directions carry frames of a 2-byte big-endian length followed by that
// many bytes (vsmartcard virtualsmartcard/src/vpcd/vpcd.c, sendToVICC and
// recvFromVICC). A frame from vpcd with a 1-byte payload is a control command
// (vpcd.h VPCD_CTRL_*): 0x00 power off, 0x01 power on, 0x02 reset, each without
// an answer, and 0x04 "get ATR", answered with the ATR. Any longer payload is a
// command APDU, answered with the response APDU.
//
// # Applet
//
// The card hosts one applet, the classic hello-world: SELECT by AID
// A0 00 00 00 62 03 01 0C 06 01 answers 90 00, then the APDU 00 00 00 00
// answers "Hello world!" 90 00. Other commands get the status words an ISO
// 7816-4 card would give. Power off, power on and reset deselect the applet.
//
// The card answers at once unless Card.SetDelay gives it a real card's
// processing time per APDU.
//
// The card never logs or prints APDU bytes.
package vcard
