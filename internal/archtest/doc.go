// Package archtest holds no code: its test checks the architecture rules of
// the module (see arch_test.go) on every `go test ./...`: who may import
// whom, and how large a file and a package may grow.
//
// It must not import any cardshare package: it reads the module with
// `go list`, as a newcomer would.
package archtest
