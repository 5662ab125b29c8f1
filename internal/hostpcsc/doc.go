// Package hostpcsc says where the host's PC/SC comes from: a Source dials
// connections that speak pcsc-lite's client protocol, probes the protocol
// version and reader-array size they speak, and names itself for logs,
// status and doctor. Socket, the pcscd socket, is the source cardshare has
// always served; other backends (a native PC/SC API) implement Source too.
//
// It may import internal/pcsc (the protocol it speaks) and internal/rawio;
// it must not import the core (internal/bridge), any transport (SSH, yamux,
// TLS, vsock) or cmd, forward, relay or config.
package hostpcsc
