//go:build (linux || netbsd || (freebsd && cgo)) && !android && !nonative && !(linux && (amd64 || arm64))

package scard

// offloadCalls returns nil: offloadLoop is written for linux/amd64 and
// linux/arm64 only, so calls here wait on the calling goroutine's thread.
func offloadCalls() func(fn uintptr, args []uintptr) (uintptr, bool) { return nil }
