// Package proxy is the protocol-aware stage of a guest connection: Proxy
// relays a pcsc-lite client connection message by message (proxy.go, the
// guest's direction; replies.go, the daemon's; wait.go, the WAIT
// registration) to translate between protocol versions (Dialect) and
// reader array sizes, and to apply a guest's pcsc.Policy with the state its
// connections share (Guest, guest.go). It reports calls (Call, for an
// audit log) and what it did instead of relaying (Notice) through
// callbacks, and never logs.
//
// The wire format (messages, structs, scanners that frame both directions
// without copying) is package pcsc's; proxy holds no payload beyond the
// call that reads it and allocates nothing per message (see
// internal/pcsc's alloc_test.go). Its tests, fuzz targets included, live
// beside pcsc's in internal/pcsc, over the same captured exchanges.
//
// It must not import a transport (x/crypto/ssh, yamux, crypto/tls, vsock),
// the core (internal/bridge), nor cmd, forward, relay or config.
package proxy
