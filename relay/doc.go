// Package relay is cardshare's relay mode: the guest's pcsc-lite connections
// reach the host pcscd over one long-lived TLS 1.3 connection per guest, on
// TCP or vsock, multiplexed with yamux.
//
//   - In the guest, an [Agent] serves the guest socket with bridge.Serve;
//     its Dial opens a yamux stream to the host, or fails at once while the
//     agent is reconnecting.
//   - On the host, a [Host] authenticates each guest and runs bridge.Serve
//     with the guest's session as the listener and the host's PC/SC (a
//     hostpcsc.Source's Dial) as the dial function. So the protocol version
//     is checked on both ends.
//   - Both ends authenticate with keys pinned at pairing ([HostState.Pair],
//     [Join]); there is no CA and no plaintext mode. [HostState.Revoke] cuts
//     a guest off, open connections included.
//
// relay/mux's Config documents the yamux settings and why they suit PC/SC, whose
// blocking calls leave a stream idle for hours.
//
// relay must not import forward (SSH mode) or config; the protocol stays in
// internal/bridge and internal/pcsc.
package relay
