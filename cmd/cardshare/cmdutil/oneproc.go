package cmdutil

import (
	"os"
	"runtime"
)

// OneProc runs the command on one P (GOMAXPROCS=1) unless the GOMAXPROCS
// environment variable says otherwise, and returns what undoes it; expose,
// up, relay serve and relay agent run so.
//
// Relaying an APDU is a chain of goroutine hand-offs of a few microseconds
// each (x/crypto/ssh's read loop, its mux and the channel reader; or
// yamux's receive loop and send goroutine), and each APDU wakes the process
// twice. With more Ps every hand-off also wakes an idle thread (futex),
// which on the small VMs cardshare runs on costs more than the work itself:
// BenchmarkRelay measured 0.27× direct with two Ps and 0.42× with one,
// against 0.41×–0.44× for a bare Go relay without TLS and yamux. With one,
// the chain runs on one thread, as OpenSSH's does, and it relays tens of
// thousands of APDUs a second, far beyond any card.
func OneProc() (undo func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	runtime.GOMAXPROCS(1)
	return runtime.SetDefaultGOMAXPROCS
}
