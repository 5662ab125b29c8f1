// Package relay moves pcsc-lite connections between a guest and the host
// pcscd, whatever carries them.
//
// Every cardshare mode is a listener, a dial function and Pipe: the guest
// socket that an SSH server forwards, a yamux session or a plain Unix socket
// is a net.Listener; the host pcscd socket or a yamux stream is reached
// through a DialFunc. Serve joins the two, checks that each connection opens
// as a pcsc-lite client does, and pipes the rest unchanged. When the guest
// and the daemon speak different protocol versions or reader array sizes,
// or a reader policy or an audit log applies, a protocol-aware stage
// (proxy.go, pcsc.Proxy) relays the connection message by message instead,
// through the same Pipe logic.
//
// Relay mode is that idea over one long-lived TLS 1.3 connection per guest,
// on TCP or vsock, multiplexed with yamux:
//
//   - In the guest, an [Agent] serves the guest socket with Serve; its Dial
//     opens a yamux stream to the host, or fails at once while the agent is
//     reconnecting.
//   - On the host, a [Host] authenticates each guest and runs Serve with the
//     guest's session as the listener and the pcscd socket as the dial
//     function. So the protocol version is checked on both ends.
//   - Both ends authenticate with keys pinned at pairing ([HostState.Pair],
//     [Join]); there is no CA and no plaintext mode. [HostState.Revoke] cuts
//     a guest off, open connections included.
//
// [MuxConfig] documents the yamux settings and why they suit PC/SC, whose
// blocking calls leave a stream idle for hours.
package relay
