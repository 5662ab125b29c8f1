// Package ccid passes the host's smart-card readers to QEMU guests as
// emulated USB CCID readers: QEMU's usb-ccid device with a
// ccid-card-passthru card, whose chardev speaks libcacard's VSCard protocol
// (package vscard). The guest needs no software of cardshare's: its own CCID
// driver (Windows' usbccid, libccid, macOS) sees a reader, which libccid
// names "Gemalto Gemplus USB SmartCard Reader 433-Swap" (QEMU's 08e6:4433).
//
// Attach binds each host reader matching a glob to one chardev (one
// usb-ccid device each; several readers need several devices), then shows
// the guest the reader (ReaderAdd), the card (its ATR) and its removal
// (CardRemove), and runs the guest's APDUs on the host card. It dials a
// QEMU that listens (server=on) or listens for a QEMU that connects, and
// reconnects when QEMU restarts.
//
// Sharing with the host: the card is connected shared, lazily at the
// guest's first command. The guest's commands run inside a transaction
// (SCardBeginTransaction) that ends once the guest has been silent for
// Config.IdleRelease (200 ms): a host program's transaction never runs in
// the middle of a burst of guest commands, and the guest's never in the
// middle of a host program's transaction (pcscd makes it wait). Commands of
// host programs that use no transaction can still come between two of the
// guest's, as between any two host programs. Config.Exclusive takes the card
// exclusively instead, while it is present. A card reset by another program
// (SCARD_W_RESET_CARD) shows in the guest as a removal and, RemovalGap
// later, an insertion: the guest's applications see a card change, never
// answers from a card state they did not set up.
//
// Limits: APDUs only (no SCardControl, escape commands or PIN pads). The
// guest's response APDUs are at most 374 bytes per CCID message
// (maxGuestResponse); longer ones reach the guest in pieces through
// 61xx/GET RESPONSE. Command APDUs up to QEMU's 64 KiB bulk-out buffer
// less the 10-byte CCID header (65526 bytes) pass. QEMU 7.2's usb-ccid
// offers T=0 only: a card offering only T=1 is shown with T=0 added to its
// ATR, and the bridge keeps T=0's rules for the guest (iso7816.Responder);
// set Config.T1 for a QEMU with x-t1-support=on.
//
// The host side is the Host interface (PC/SC calls); NewSCardHost adapts
// internal/scard. The package never logs APDU bytes, only their sizes.
//
// ccid must not import cmd/, forward, relay or config.
package ccid
