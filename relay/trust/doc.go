// Package trust is who relay mode trusts, and how that trust is made: each
// end's Ed25519 key and the SHA-256 Fingerprint the other pins, the TLS 1.3
// configurations that check those pins (HostTLSConfig, GuestTLSConfig),
// pairing tokens and the guest's side of a pairing (Token, Pair), the
// guest's Credentials, and the host's HostState: its key, the paired
// guests and the pending pairings, in a directory only its owner may enter.
//
// Its errors start with "relay:", as relay mode's do: the CLI prints them as
// they are. trust speaks TLS but carries nothing: it must not import yamux,
// vsock, the core (internal/bridge) or relay, forward, cmd or config.
package trust
