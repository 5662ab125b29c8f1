// Package scard is the PC/SC API as cardshare sees it: the handful of
// SCard* calls a daemon needs (Library), with every value in pcsc-lite's
// numbering whatever the host's own API uses, and backends that reach the
// host's PC/SC library without cgo:
//
//   - Linux and the BSDs: libpcsclite.so.1 through purego (lib_unix.go),
//     with the Linux ABI (DWORD = unsigned long, abi.go);
//   - Windows: winscard.dll through golang.org/x/sys/windows, the W
//     functions (lib_windows.go), translated to pcsc-lite by winabi.go;
//   - macOS: PCSC.framework through purego (lib_darwin.go), with Apple's
//     32-bit DWORD and packed structs.
//
// The calls themselves are written once (proc.go) over a table of
// function addresses and an ABI description; the platform files only load
// the library. Layouts and translations are plain functions, so that their
// unit tests run on any host.
//
// On Linux, importing this package makes even a CGO_ENABLED=0 binary
// dynamically linked against libc (purego's loader needs the dynamic
// linker); build with -tags nonative to leave the native backend out and
// keep the binary static.
//
// On linux/amd64 and linux/arm64 each call runs on an offload thread that
// waits outside the Go scheduler, while the calling goroutine waits in the
// network poller (offload_linux.go): a blocking C call made by a goroutine
// costs the runtime a sysmon wake-up and a processor hand-off per call,
// more than the call itself when a fast card answers in microseconds.
//
// Open loads the library lazily, on first use, and says what to install
// when it is missing (LoadError). Fake implementations of Library serve
// tests of the packages above.
//
// This package must not import anything of cardshare's: it sits below
// every other package. It never logs.
package scard
