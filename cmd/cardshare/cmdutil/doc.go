// Package cmdutil is what cardshare's subcommand packages share (as gh's
// pkg/cmdutil is for gh): the global flags and the logger they configure
// (Globals), the flags several subcommands declare with the same name and
// help, usage errors (Usage), errors with a hint (WithHint), the hint table
// that chooses a hint from an error value (Hint), and PrintError, the one
// place errors are printed.
//
// It parses and prints only: it must not import forward or relay (the
// relay subcommands live in cmd/cardshare/relaycmd and attach their hints
// with WithHint).
package cmdutil
