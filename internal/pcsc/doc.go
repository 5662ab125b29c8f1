// Package pcsc implements the pcsc-lite client/server wire protocol as
// cardshare needs it: the CMD_VERSION handshake and the opening message of
// a client connection (wire.go), a probe that asks a running pcscd which
// protocol version it speaks and how many reader records it sends
// (probe.go), the messages of protocols 4.4 to 4.6 (codec.go) and scanners
// that frame both directions of a connection without copying (stream.go),
// and Proxy (proxy.go, the guest's direction; replies.go, the daemon's;
// wait.go, the WAIT registration), which relays a connection message by
// message to translate between protocol versions and reader array sizes
// and to apply a guest's Policy (policy.go).
//
// The protocol is pcsc-lite's private Unix-socket protocol (src/winscard_msg.h
// in pcsc-lite). Every integer travels in host byte order; cardshare supports
// little-endian peers, which covers every platform a VM host runs on.
//
// Nothing in this package logs: the proxy reports calls and refusals
// through callbacks. Nothing keeps payload bytes beyond the call that reads
// them, and no length read from the wire makes it allocate: it frames APDUs
// and reader arrays in pieces through fixed buffers.
package pcsc
