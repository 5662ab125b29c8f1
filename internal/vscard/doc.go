// Package vscard is the codec of libcacard's VSCard protocol, the byte
// stream between QEMU's ccid-card-passthru device and whoever provides the
// card (for cardshare, the host's reader).
//
// The protocol is defined by libcacard's src/vscard_common.h (spice-libcacard
// v2.8.0) and implemented on QEMU's side by hw/usb/ccid-card-passthru.c
// (QEMU v7.2.0, the version Debian 12 ships). Line numbers below refer to
// those two files at those tags.
//
// Every message is a 12-byte header of three 32-bit big-endian words (type,
// reader id, payload length; vscard_common.h:92-97, ccid-card-passthru.c:83-85
// converts them with htonl) followed by the payload. The payloads:
//
//	Init         magic "VSCD", version (big-endian), capabilities (big-endian
//	             words); both sides send one (vscard_common.h:107-111)
//	Error        one big-endian code: the answer to ReaderAdd, ReaderRemove,
//	             ATR and CardRemove (vscard_common.h:123-125)
//	ReaderAdd    the reader's name, UTF-8, informational
//	ATR          the card's answer to reset: a card was inserted or reset
//	APDU         a command APDU (QEMU to us) or a response APDU (us to QEMU)
//	ReaderRemove, CardRemove, Flush, FlushComplete: empty
//
// QEMU buffers at most 64 KiB of incoming VSCard bytes and drops the
// connection beyond (ccid-card-passthru.c:50, 284-289), and it sends guest
// APDUs of up to 64 KiB (its CCID bulk-out buffer, dev-smartcard-reader.c:71).
// Reader therefore refuses any length above MaxPayload before reading the
// payload, so a hostile peer cannot make it allocate more.
//
// The package never logs; callers must not log payloads (APDUs carry PINs).
//
// vscard must not import anything of cardshare's: it sits at the bottom, used
// by the QEMU bridge (internal/ccid).
package vscard
