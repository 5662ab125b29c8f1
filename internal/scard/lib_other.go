//go:build (!linux && !netbsd && !darwin && !windows && !(freebsd && cgo)) || android || (nonative && !darwin && !windows)

package scard

import "errors"

// On FreeBSD, purego needs cgo (its no-cgo runtime does not build there
// with this Go), so a CGO_ENABLED=0 build has no native backend. The
// nonative build tag leaves purego out on Linux and NetBSD too: with it,
// a CGO_ENABLED=0 binary stays static (purego links libc dynamically).
func open() (Library, error) {
	return nil, &LoadError{Library: "libpcsclite.so.1", Hint: "this build of cardshare has no native PC/SC backend (on FreeBSD, build with CGO_ENABLED=1); use the pcscd socket", Err: errors.New("not built in")}
}
