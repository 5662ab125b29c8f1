// Package winehost tests cardshare's native backend for Windows for real,
// under Wine (scripts/wine-host.sh): the windows/amd64 build of
// testdata/winserve runs nativepcsc over Wine's winscard.dll, which calls
// the libpcsclite of a Debian trixie chroot, talking to that chroot's
// pcscd with vpcd and the test card. The package has no code of its own.
package winehost
