#!/usr/bin/env bash
# Runs the three-version rig: real pcsc-lite of Debian bookworm (1.9.9,
# protocol 4.4), trixie (2.3.3, 4.5 strict) and sid (2.5.3, 4.6), every
# client against every daemon, through a byte relay and through cardshare,
# and prints the two 3×3 tables (TestVersionMatrix in internal/matrix);
# then every client against cardshare's native backend hosted on every
# release's own libpcsclite and pcscd (a CGO_ENABLED=0 build of the host
# side run in that release's chroot), the third table
# (TestVersionMatrixNative). Each cell runs the C test client (list,
# hello, a blocking wait that sees a card inserted) and the release's
# pcsc_scan (reader plug and play).
#
# bookworm is this machine. trixie and sid are debootstrap chroots, made
# once and cached outside the checkout in $CARDSHARE_MATRIX_CACHE (default
# ~/.cache/cardshare-matrix); delete a directory there to rebuild it. Each
# daemon runs in a private mount and network namespace with vpcd's two
# readers, as the other end-to-end tests' pcscd does; the C test client
# runs inside each chroot on that release's libpcsclite. Needs root, the
# Debian mirror, and about 700 MB the first time; later runs take about a
# minute.
#
# Usage: scripts/version-matrix.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "version-matrix: needs root (chroots, namespaces)" >&2
	exit 1
fi
cache=${CARDSHARE_MATRIX_CACHE:-$HOME/.cache/cardshare-matrix}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"
# One run at a time: every run uses the chroots' /cardshare-matrix.
exec 9>"$cache/.lock"
if ! flock -n 9; then
	echo "version-matrix: another run holds $cache/.lock; waiting for it" >&2
	flock 9
fi

command -v pcsc_scan >/dev/null || apt-get install -y pcsc-tools
. scripts/lib/chroot.sh

for suite in trixie sid; do
	root=$cache/$suite
	[ -e "$root/.cardshare-ready-2" ] && continue
	echo "version-matrix: building the $suite chroot in $root"
	rm -rf "$root"
	debootstrap_to "$suite" "$root" "$mirror" "$cache/$suite.log"
	# sid's Release file is often past its Valid-Until date on mirrors.
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99cardshare"
	# pcscd pulls in polkitd, dbus and systemd (logind), which debootstrap
	# cannot choose between; apt can. The daemons run without them
	# (--disable-polkit).
	chroot_install "$root" "$cache/$suite.log" pcscd libpcsclite1 vsmartcard-vpcd pcsc-tools
	chroot "$root" dpkg-query -W pcscd libpcsclite1 vsmartcard-vpcd pcsc-tools
	touch "$root/.cardshare-ready-2"
done

CARDSHARE_MATRIX_CACHE=$cache go test -count=1 -run '^TestVersionMatrix(Native)?$' -timeout 15m -v "$@" ./internal/matrix
