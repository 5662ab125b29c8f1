// Package forward connects to a guest over SSH and serves the host's pcscd
// on a Unix socket inside the guest.
//
// The connection layer works in two steps, the way OpenSSH itself does:
//
//   - [Resolve] turns what the user typed ("myvm", "user@host:2222") into a
//     [Target] by asking OpenSSH (`ssh -G`), so Include, Match (including
//     Match exec), Host patterns and defaults are evaluated exactly as ssh
//     would evaluate them.
//   - [Dial] connects to a Target with golang.org/x/crypto/ssh: ProxyJump
//     hops, known_hosts checking with StrictHostKeyChecking semantics, and
//     public key authentication through ssh-agent and identity files.
//
// Errors that callers branch on are [ErrHostUnknown], [ErrHostKeyChanged],
// [ErrAuth] and [ErrProxyCommand] (use errors.Is), with details in
// [*HostKeyError], [*AuthError] and [*ConnectError] (use errors.As).
package forward
