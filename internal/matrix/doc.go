// Package matrix runs real pcsc-lite clients of three Debian releases
// against real pcscd daemons of the same three, directly through a byte
// relay and through cardshare's relay, and prints the compatibility
// tables. It has no code of its own, only TestVersionMatrix, which runs
// when scripts/version-matrix.sh has made the releases' chroots and set
// CARDSHARE_MATRIX_CACHE, TestVersionMatrixNative, the same clients
// against the native backend (internal/nativepcsc), and TestNativePolicy,
// a reader policy and audit log on the native backend.
package matrix
