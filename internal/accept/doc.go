// Package accept is the one accept loop of cardshare's listeners: Loop
// serves each connection in its own goroutine, caps how many are handled at
// once (refusing the rest at accept), retries the system's accept errors
// with a growing pause, and stops and waits for its handlers when its
// context ends or the listener fails. The core (internal/bridge) serves
// guest connections with it; relay mode accepts its TLS handshakes with it.
//
// It knows nothing of what it accepts: it must not import any protocol or
// transport package, nor anything of cardshare but internal/backoff.
package accept
