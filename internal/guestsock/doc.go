// Package guestsock handles the guest socket of the SSH mode inside the
// guest, over an SSH connection, with POSIX sh scripts sent on standard
// input ([Run]): [Prepare] chooses the path (the default is a directory
// only the login user can enter, [DefaultDirFunc]) and refuses a directory
// that others can write to; [ClearStale] removes a socket left by a dead
// forward but never a live one; [Missing] and [Remove] watch and clean up;
// [Listen] opens the forward of the path (streamlocal-forward@openssh.com);
// [Inspect] and [ProbeStreamLocal] report all of it for `cardshare doctor`
// without changing anything.
//
// Errors that callers branch on are unixsock.ErrSocketInUse (a live
// listener holds the path, in the guest as on the host), [ErrUnsafeDir],
// [ErrRemoved] and [ErrForwardRefused] (use errors.Is); their text carries
// no package prefix.
//
// guestsock must not import forward, relay, config or cmd.
package guestsock
