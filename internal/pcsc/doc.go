// Package pcsc implements the pcsc-lite client/server wire protocol as
// cardshare needs it: the CMD_VERSION handshake and the opening message of
// a client connection (wire.go), a probe that asks a running pcscd which
// protocol version it speaks and how many reader records it sends
// (probe.go), the messages of protocols 4.4 to 4.6 (codec.go), scanners
// that frame both directions of a connection without copying (stream.go),
// and a guest's reader Policy (policy.go). The proxy stage that relays a
// connection message by message to translate between versions and apply a
// Policy is package internal/pcsc/proxy; the offsets and helpers this
// package exports for it say so.
//
// The protocol is pcsc-lite's private Unix-socket protocol (src/winscard_msg.h
// in pcsc-lite). Every integer travels in host byte order; cardshare supports
// little-endian peers, which covers every platform a VM host runs on.
//
// Nothing in this package logs. Nothing keeps payload bytes beyond the call
// that reads them, and no length read from the wire makes it allocate: it
// frames APDUs and reader arrays in pieces through fixed buffers.
package pcsc
