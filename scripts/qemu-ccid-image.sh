#!/usr/bin/env bash
# Builds (once) the QEMU guest that scripts/qemu-ccid.sh boots: Debian
# bookworm made with debootstrap, holding the Debian kernel
# (linux-image-amd64), pcscd, libccid and pcsc-tools, packed into an ext4
# image with `mke2fs -d` (no loop mounts). The kernel and initrd are copied
# beside it, so QEMU boots them directly (-kernel/-initrd).
#
# The guest's init is /sbin/cardshare-init (below): it mounts the usual file
# systems, starts udevd (which loads the xHCI driver and creates the USB device
# nodes libccid opens), starts pcscd, mounts the second disk (the test disk
# that qemu-ccid.sh makes for each run), runs its run.sh with the output on
# the serial console, and powers off.
#
# The result is cached outside the checkout in $CARDSHARE_QEMU_CACHE (default
# ~/.cache/cardshare-qemu); delete the directory to rebuild. Needs root and the
# Debian mirror; about 600 MB and a few minutes the first time.
#
# Usage: scripts/qemu-ccid-image.sh        (prints the cache directory)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "qemu-ccid-image: needs root (debootstrap, chroot)" >&2
	exit 1
fi
cache=${CARDSHARE_QEMU_CACHE:-$HOME/.cache/cardshare-qemu}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Two stages, each cached: the root file system (slow), then the image
# made from it with the init below (quick; its marker's number changes with
# the init).
ready=$cache/.cardshare-ready-2
if [ -e "$ready" ]; then
	echo "$cache"
	exit 0
fi
mkdir -p "$cache"
. "$(dirname "$0")/lib/chroot.sh"
command -v mke2fs >/dev/null || apt-get install -y e2fsprogs

root=$cache/rootfs
log=$cache/build.log
rm -f "$cache"/.cardshare-ready-* "$cache/rootfs.ext4" "$cache/vmlinuz" "$cache/initrd.img"
if [ ! -e "$root/.cardshare-rootfs-1" ]; then
echo "qemu-ccid-image: building the bookworm guest in $root (log: $log)" >&2
rm -rf "$root"
debootstrap_to bookworm "$root" "$mirror" "$log"
# udev: the guest's init starts udevd to load drivers and make /dev/bus/usb
# nodes. kmod: modprobe. The kernel's initrd (initramfs-tools, MODULES=most)
# holds virtio_blk and ext4.
chroot_install "$root" "$log" linux-image-amd64 initramfs-tools \
	udev kmod pcscd libccid libpcsclite1 pcsc-tools procps
chroot "$root" dpkg-query -W linux-image-amd64 pcscd libccid pcsc-tools >&2
rm -f "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get clean
touch "$root/.cardshare-rootfs-1"
fi

cat >"$root/sbin/cardshare-init" <<'EOF'
#!/bin/sh
# cardshare's test guest init (scripts/qemu-ccid-image.sh): run the test
# disk's run.sh with pcscd up, print everything on the serial console, power
# off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run/pcscd /test
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /run/pcscd
mount -t tmpfs tmpfs /tmp
hostname cardshare-guest
echo "guest: kernel $(uname -r), booted in $(cut -d' ' -f1 /proc/uptime) s"
/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
udevadm trigger --action=add >/dev/null 2>&1
udevadm settle --timeout=30
# pcscd finds the usb-ccid readers through libudev and libccid.
pcscd --foreground --info >/tmp/pcscd.log 2>&1 &
for i in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.2; done
mount -o ro /dev/vdb /test || echo "guest: no test disk"
if [ -x /test/run.sh ]; then
	/test/run.sh 2>&1
else
	echo "guest: no /test/run.sh"
fi
echo "guest: pcscd's log:"
sed 's/^/guest:   pcscd: /' /tmp/pcscd.log
echo "guest: done"
sync
echo o >/proc/sysrq-trigger
sleep 10
EOF
chmod 755 "$root/sbin/cardshare-init"

cp "$root"/boot/vmlinuz-* "$cache/vmlinuz"
cp "$root"/boot/initrd.img-* "$cache/initrd.img"
# mke2fs -d copies the tree into the new file system (e2fsprogs ≥ 1.43), so
# the image is made without a loop mount. Size: the tree plus room.
size_mb=$(($(du -sm "$root" | cut -f1) + 300))
mke2fs -q -t ext4 -L cardshare-root -d "$root" "$cache/rootfs.ext4" "${size_mb}M" >>"$log" 2>&1
touch "$ready"
echo "$cache"
