// Package backoff paces retries: a capped, jittered exponential Backoff
// between attempts to reach a peer, and a Sleep that ends early when its
// context does. Relay mode's agent and dialing host, SSH mode's forwarder and
// the accept loop (internal/accept) use it.
//
// It imports only the standard library and must not import any other
// cardshare package.
package backoff
