//go:build race

package pcsc_test

// raceEnabled: the race detector allocates on its own.
const raceEnabled = true
