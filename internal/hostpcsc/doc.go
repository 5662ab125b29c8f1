// Package hostpcsc says where the host's PC/SC comes from: a Source dials
// connections that speak pcsc-lite's client protocol, probes the protocol
// version and reader-array size they speak, and names itself for logs,
// status and doctor. Socket, the pcscd socket, is the source cardshare has
// always served; the native backend (internal/nativepcsc over the system's
// PC/SC API, internal/scard) implements Source too, and serves the guest
// connections that need no protocol stage itself (bridge.Local). New, Open and Pick
// choose between them (--backend auto|socket|native); Close releases what
// a native Source holds.
//
// It may import internal/pcsc (the protocol it speaks), internal/rawio,
// internal/nativepcsc and internal/scard;
// it must not import the core (internal/bridge), any transport (SSH, yamux,
// TLS, vsock) or cmd, forward, relay or config.
package hostpcsc
