//go:build (linux || netbsd || (freebsd && cgo)) && !android && !nonative

package scard

import (
	"errors"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// unixLibraries are the names libpcsclite has: the soname (Linux,
// FreeBSD's /usr/local/lib through ldconfig), then pkgsrc's prefix.
var unixLibraries = []string{"libpcsclite.so.1", "/usr/pkg/lib/libpcsclite.so.1", "libpcsclite.so"}

const unixHint = "install pcsc-lite's client library: libpcsclite1 (Debian, Ubuntu), pcsc-lite-libs (Fedora), pcsclite (Arch, Alpine), devel/pcsc-lite (FreeBSD ports), security/pcsc-lite (pkgsrc)"

func open() (Library, error) {
	var errs []string
	for _, name := range unixLibraries {
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p := &proc{
			name:     name,
			abi:      abiLinux64,
			features: Features{PnP: true, EventCounts: true, BlockingWait: true},
			sys: func(fn uintptr, args ...uintptr) uintptr {
				r, _, _ := purego.SyscallN(fn, args...)
				return r
			},
			offload: offloadCalls(),
		}
		if unsafe.Sizeof(uintptr(0)) == 4 {
			p.abi = abiLinux32
		}
		if err := p.fn.load(symbolNames, func(s string) (uintptr, error) { return purego.Dlsym(h, s) }); err != nil {
			return nil, &LoadError{Library: name, Hint: unixHint, Err: err}
		}
		return p, nil
	}
	return nil, &LoadError{Library: unixLibraries[0], Hint: unixHint, Err: errors.New(strings.Join(errs, "; "))}
}
