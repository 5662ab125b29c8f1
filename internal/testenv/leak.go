package testenv

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// Usage counts what a leak would leave behind in this process: goroutines
// and file descriptors.
type Usage struct {
	Goroutines int
	FDs        map[string]string // fd number → what it is
}

// Snapshot reads the goroutines and file descriptors of this process now.
// Tests that compare snapshots must not run in parallel.
func Snapshot(t testing.TB) Usage {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	u := Usage{runtime.NumGoroutine(), map[string]string{}}
	for _, e := range ents {
		u.FDs[e.Name()], _ = os.Readlink("/proc/self/fd/" + e.Name())
	}
	return u
}

// CheckNoLeak waits up to 10 s for the goroutines and file descriptors to
// come back to before, and fails the test with what is new otherwise.
// Connections end asynchronously: a relay notices a closed peer only when
// its read returns.
func CheckNoLeak(t testing.TB, before Usage) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := Snapshot(t)
		if now.Goroutines <= before.Goroutines && len(now.FDs) <= len(before.FDs) {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for fd, what := range now.FDs {
				if before.FDs[fd] != what {
					fmt.Fprintf(&b, "new fd %s: %s\n", fd, what)
				}
			}
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("leak: %d goroutines and %d fds, before the fault %d and %d\n%s",
				now.Goroutines, len(now.FDs), before.Goroutines, len(before.FDs), b.String())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
