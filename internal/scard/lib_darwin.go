//go:build darwin

package scard

import (
	"github.com/ebitengine/purego"
)

// darwinFramework is Apple's PC/SC, a thin layer over CryptoTokenKit.
const darwinFramework = "/System/Library/Frameworks/PCSC.framework/PCSC"

// darwinNames are symbolNames with Apple's SCardControl: the framework
// exports the pcsc-lite 1.3.2 signature (with dwBytesReturned) as
// SCardControl132 (Apple's winscard.h; Wine's dlls/winscard/unixlib.c
// calls it so on macOS).
var darwinNames = func() [15]string {
	n := symbolNames
	n[11] = "SCardControl132"
	return n
}()

func open() (Library, error) {
	hint := "PCSC.framework ships with macOS; is this a macOS build running elsewhere?"
	h, err := purego.Dlopen(darwinFramework, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, &LoadError{Library: darwinFramework, Hint: hint, Err: err}
	}
	p := &proc{
		name: darwinFramework,
		abi:  abiDarwin,
		// No \\?PnP?\Notification reader and no event counter in
		// dwEventState on macOS: the daemon polls ListReaders and counts
		// card events itself.
		features: Features{BlockingWait: true},
		sys: func(fn uintptr, args ...uintptr) uintptr {
			r, _, _ := purego.SyscallN(fn, args...)
			return r
		},
	}
	if err := p.fn.load(darwinNames, func(s string) (uintptr, error) { return purego.Dlsym(h, s) }); err != nil {
		return nil, &LoadError{Library: darwinFramework, Hint: hint, Err: err}
	}
	return p, nil
}
