// Package relaycmd is `cardshare relay` and its subcommands (serve, pair,
// list, revoke, policy, join, agent): flag parsing and printing over
// package relay and relay/trust. Hints for relay mode's errors are chosen
// from error values in relayHint and attached with cmdutil.WithHint.
//
// It must not import forward: the SSH mode's subcommands live in
// cmd/cardshare.
package relaycmd
