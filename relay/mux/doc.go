// Package mux is relay mode's multiplexing: one yamux session per guest
// connection carries each pcsc-lite connection as a stream. Config and its
// comments say why the settings suit PC/SC, whose blocking calls leave a
// stream idle for hours; the stream adapter makes yamux's half-close
// explicit (CloseWrite) and turns a session that died under a stream into
// ErrSessionLost instead of a clean EOF.
//
// It carries bytes only: it must not import the protocol (internal/pcsc),
// the core (internal/bridge), TLS or trust, nor relay, forward, cmd or
// config.
package mux
