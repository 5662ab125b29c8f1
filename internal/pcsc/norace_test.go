//go:build !race

package pcsc_test

const raceEnabled = false
