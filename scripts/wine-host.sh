#!/usr/bin/env bash
# Runs cardshare's Windows host side for real, under Wine: a debootstrap
# Debian trixie chroot with wine64 (Wine 10, whose winscard.dll calls the
# chroot's libpcsclite), its own pcscd 2.3.3 with vpcd and the test card.
# This machine's libpcsclite 1.9.9 (the C client and pcsc_scan) is the
# guest every time: reader list, hello world, a blocking wait that sees a
# card inserted, pcsc_scan. The tests (internal/winehost):
#   TestWineExpose  the windows/amd64 `cardshare.exe expose --backend
#                   native` dials the test sshd on loopback, with ssh_config
#                   read by cardshare itself (no ssh.exe under Wine; -F with
#                   a Windows path), the key and known_hosts from
#                   %USERPROFILE%\.ssh; then `cardshare.exe up` from
#                   %USERPROFILE%\.config\cardshare\config.yaml (backend auto)
#                   beside it.
#   TestWineRelay   `cardshare.exe relay serve --backend native` and `relay
#                   pair` under Wine, this machine's `cardshare relay join`
#                   (token on stdin) and `relay agent` as the guest;
#                   `cardshare.exe status` says status is unavailable.
#   TestWinePackages internal/control's tests (no AF_UNIX under Wine, so
#                   ErrUnavailable from Listen and Query) and internal/sshconfig's.
#   TestWineHost    the daemon end alone (testdata/winserve on loopback TCP).
#
# The chroot is made once and cached outside the checkout in
# $CARDSHARE_WINE_CACHE (default ~/.cache/cardshare-wine); delete it to
# rebuild. It starts from the version-matrix rig's trixie chroot when that
# exists ($CARDSHARE_MATRIX_CACHE, default ~/.cache/cardshare-matrix), as
# scripts/version-matrix.sh builds it, else debootstraps one the same way.
# Needs root and the Debian mirror; about 1.2 GB the first time.
#
# Usage: scripts/wine-host.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "wine-host: needs root (chroot, namespaces)" >&2
	exit 1
fi
cache=${CARDSHARE_WINE_CACHE:-$HOME/.cache/cardshare-wine}
matrix=${CARDSHARE_MATRIX_CACHE:-$HOME/.cache/cardshare-matrix}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/trixie
mkdir -p "$cache"

. scripts/lib/chroot.sh

if [ ! -e "$root/.cardshare-wine-ready-1" ]; then
	rm -rf "$root"
	if [ -e "$matrix/trixie/.cardshare-ready-2" ]; then
		echo "wine-host: copying the version-matrix trixie chroot to $root"
		cp -a "$matrix/trixie" "$root"
	else
		echo "wine-host: building the trixie chroot in $root"
		debootstrap_to trixie "$root" "$mirror" "$cache/trixie.log"
	fi
	chroot_install "$root" "$cache/trixie.log" pcscd libpcsclite1 vsmartcard-vpcd pcsc-tools wine64
	chroot "$root" dpkg-query -W pcscd libpcsclite1 vsmartcard-vpcd wine64
	touch "$root/.cardshare-wine-ready-1"
fi

CARDSHARE_WINE_ROOT=$root go test -count=1 -run '^TestWine' -timeout 15m -v "$@" ./internal/winehost
