// Package sshdial connects to an SSH server the way OpenSSH would, for the
// SSH mode (package forward), `cardshare doctor` and `guest setup`.
//
// It works in two steps, as OpenSSH itself does:
//
//   - [Resolve] turns what the user typed ("myvm", "user@host:2222") into a
//     [Target] by asking OpenSSH (`ssh -G`), so Include, Match (including
//     Match exec), Host patterns and defaults are evaluated exactly as ssh
//     would evaluate them. Without a native ssh program (Windows without
//     its OpenSSH feature, Wine) it reads ssh_config itself, for the
//     keywords a connection needs (builtin.go), with the OS's defaults
//     from internal/sshpaths, which also finds and dials the agent (a
//     Unix socket, or a named pipe on Windows); and [IsConfigAlias].
//   - [Dial] connects to a Target with golang.org/x/crypto/ssh: ProxyJump
//     hops, known_hosts checking with StrictHostKeyChecking semantics, and
//     public key authentication through ssh-agent and identity files. A
//     server that accepts the connection but sends no version line within
//     a few seconds (a VM manager's port forward to a booting guest) fails
//     fast instead of waiting out ConnectTimeout.
//
// Errors that callers branch on are [ErrHostUnknown], [ErrHostKeyChanged],
// [ErrAuth], [ErrNoSuchHost], [ErrConnect], [ErrNoBanner] and
// [ErrProxyCommand] (use errors.Is), with details in
// [*hostKeyError], [*authError] and [*connectError] (use errors.As). Their
// text carries no package prefix: it is shown to the user as it is, after
// the guest's name or `cardshare: error:`.
//
// sshdial knows nothing of pcscd or guests: it must not import forward,
// relay, config, cmd or internal/pcsc; of cardshare's own packages it
// imports internal/rawio and internal/sshpaths.
package sshdial
