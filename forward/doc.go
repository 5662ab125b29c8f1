// Package forward is the SSH mode: it serves the host's pcscd on a Unix
// socket inside each guest, through a remote Unix socket forward
// (streamlocal-forward@openssh.com) of an SSH connection to the guest.
//
// A [Forwarder] keeps one guest's forward up: it dials the guest
// (internal/sshdial), prepares the guest socket path (internal/guestsock),
// listens on it with ssh.Client.ListenUnix and serves every guest
// connection with the shared core, which checks protocol versions and
// pipes to the host pcscd. Keepalives and a periodic check of the guest
// socket notice a lost guest; it then reconnects with capped exponential
// backoff. [Expose] runs one Forwarder per guest; a [StartGate] bounds how
// many of them set up at once, so that a hundred guests starting together
// do not drown one sshd.
//
// Errors that callers branch on are those of internal/sshdial and
// internal/guestsock (use errors.Is); a guest that stopped is reported as
// a [*GuestError]. Error text carries no package
// prefix: it is shown after the guest's name or `cardshare: error:`.
//
// forward must not import relay's TLS mode or cmd.
package forward
