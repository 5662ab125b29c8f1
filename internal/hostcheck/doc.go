// Package hostcheck holds doctor's checks of a macOS or Windows host:
// whether PC/SC answers (the Windows Smart Card service starts only while
// a reader is attached), whether a reader is there, whether the ssh-agent
// and an ssh program can be reached, what macOS version bugs apply, and
// which WSL2 networking mode the relay must fit.
//
// Each check is a pure function from what was probed to a Result with a
// fix, so that the Windows and macOS answers are tested on Linux with
// made-up probes; the Probe functions gather the real inputs.
//
// It imports internal/sshpaths and nothing else from cardshare; the PC/SC
// probe is given by the caller (the native backend), as return codes.
package hostcheck
