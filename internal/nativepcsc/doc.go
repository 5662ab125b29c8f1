// Package nativepcsc makes cardshare the daemon end of pcsc-lite's
// client/server protocol, served in-process from the host's PC/SC API
// (package scard): libpcsclite through purego on Linux and the BSDs,
// winscard.dll on Windows, PCSC.framework on macOS. It is the host-side
// source for hosts with no pcscd socket to forward.
//
// A Source serves each guest connection the way pcscd serves a client
// (pcsc-lite src/winscard_svc.c): it answers CMD_VERSION for protocols
// 4.4, 4.5 and 4.6 natively, maps every guest context and card handle to a
// host one (hub.go keeps nothing a guest can guess across guests: handles
// are random and checked per connection), and serves the reader state
// array and its events from one host event loop (hub.go) that watches all
// readers and the PnP pseudo reader, counts card events per reader itself,
// and paces itself when the host's SCardGetStatusChange does not block
// (Wine). Framing and structs are internal/pcsc's codec.
//
// Guests see the host's reader names, cut to 127 bytes: pcscd's on Linux
// ("Name 00 00"), the Smart Card service's on Windows ("Name 0"), Apple's
// on macOS. Reader policies match those names.
//
// A bad guest closes only its own connection; every length read from the
// wire is checked against pcsc-lite's limits before anything is read or
// allocated; payloads are never logged.
//
// This package imports internal/pcsc, scard and accept only; nothing
// under internal/ may import cmd, forward, relay or config.
package nativepcsc
