// Package guestsetup points a guest's programs at the socket that the SSH
// mode forwards, from the host over SSH with plain POSIX sh, so that the
// guest needs no cardshare binary: a marked block in the login shell's
// profile, ~/.config/environment.d/cardshare.conf, and with --system a
// tmpfiles.d link from /run/pcscd/pcscd.comm with the guest's own pcscd
// masked. [Setup] surveys the guest first and changes nothing when a step
// would fail; with Undo it removes exactly what it added. [InspectEnv]
// reads the same state for `cardshare doctor`.
//
// Errors that callers branch on are [ErrSudo] and [ErrSetup] (use
// errors.Is); their text carries no package prefix.
//
// guestsetup runs over an *ssh.Client that the caller dialed; it must not
// import forward, relay, config or cmd.
package guestsetup
