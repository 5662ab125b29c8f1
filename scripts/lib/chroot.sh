# Debian chroots for the opt-in rigs (version-matrix.sh, wine-host.sh,
# qemu-ccid-image.sh), which source this file. They run as root, with
# set -euo pipefail.

# debootstrap_to SUITE ROOT MIRROR LOG makes a minimal Debian SUITE in ROOT,
# logging to LOG; on failure it prints the log's end and exits.
debootstrap_to() {
	command -v debootstrap >/dev/null || apt-get install -y debootstrap
	debootstrap --variant=minbase "$1" "$2" "$3" >"$4" 2>&1 || {
		tail -n 20 "$4" >&2
		exit 1
	}
}

# chroot_apt ROOT ARGS... runs apt-get ARGS in the chroot ROOT with /proc,
# /sys and /dev mounted (update-initramfs needs them) and no service
# started by a package's scripts (policy-rc.d).
chroot_apt() {
	local root=$1
	shift
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mount -t proc proc "$root/proc"
	mount -t sysfs sysfs "$root/sys"
	mount --bind /dev "$root/dev"
	local rc=0
	DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get "$@" || rc=$?
	umount "$root/dev" "$root/sys" "$root/proc"
	return $rc
}

# chroot_install ROOT LOG PACKAGES... updates ROOT's package lists and
# installs PACKAGES without recommends, logging to LOG; on failure it
# prints the log's end and exits.
chroot_install() {
	local root=$1 log=$2
	shift 2
	if ! chroot_apt "$root" update >>"$log" 2>&1 ||
		! chroot_apt "$root" install -y --no-install-recommends "$@" >>"$log" 2>&1; then
		tail -n 20 "$log" >&2
		exit 1
	fi
}
