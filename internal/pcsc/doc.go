// Package pcsc implements the parts of the pcsc-lite client/server wire
// protocol that cardshare needs: message headers, the CMD_VERSION handshake,
// the opening message of a client connection, and a probe that asks a running
// pcscd which protocol version it speaks.
//
// The protocol is pcsc-lite's private Unix-socket protocol (src/winscard_msg.h
// in pcsc-lite). Every integer travels in host byte order; cardshare supports
// little-endian peers, which covers every platform a VM host runs on.
//
// Nothing in this package logs, and nothing keeps payload bytes beyond the
// call that reads them.
package pcsc
