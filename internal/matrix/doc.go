// Package matrix runs real pcsc-lite clients of three Debian releases
// against real pcscd daemons of the same three, directly through a byte
// relay and through cardshare's relay, and prints the compatibility
// tables. It has no code of its own, only tests, which run when
// scripts/version-matrix.sh has made the releases' chroots and set
// CARDSHARE_MATRIX_CACHE: TestVersionMatrix (every client against every
// daemon) and TestVersionMatrixNative (every client against cardshare's
// native backend, internal/nativepcsc, hosted on every release's own
// libpcsclite and pcscd by testdata/nativehost, run in that release's
// chroot). TestNativePolicy, a reader policy and audit log on the native
// backend, runs everywhere the end-to-end tests do.
package matrix
