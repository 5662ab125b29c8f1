// Package control is the control socket of a running `cardshare up` or
// `cardshare relay serve`: HTTP over a Unix socket in a directory only its
// owner can enter ([Listen], [Serve]), serving the status document
// [StatusV1] that `cardshare status` reads with [Query] and prints as a
// table ([StatusV1.WriteText]; [PolicyText] words a reader policy the
// same way wherever the CLI shows one).
//
// Errors that callers branch on are [ErrNotRunning], [ErrAlreadyRunning],
// [ErrPathTooLong], [ErrNotOwner], [ErrVersion] and [ErrUnavailable] (use errors.Is).
//
// control knows nothing of how guests are served: it must not import
// forward, relay, config or cmd.
package control
