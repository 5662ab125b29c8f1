// Package winehost tests cardshare's Windows host side for real, under
// Wine (scripts/wine-host.sh): the windows/amd64 `cardshare.exe expose`,
// `up`, `relay serve`, `relay pair` and `status`, internal/control's tests,
// and testdata/winserve (the daemon end alone), each with the native
// backend over Wine's winscard.dll, which calls the libpcsclite of a
// Debian trixie chroot, talking to that chroot's pcscd with vpcd and the
// test card; this machine's libpcsclite is the guest. The package has no
// code of its own.
package winehost
