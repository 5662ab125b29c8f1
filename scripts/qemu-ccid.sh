#!/usr/bin/env bash
# Runs the real-QEMU rig of the QEMU CCID bridge (internal/ccid,
# TestQEMUGuest): Debian's qemu-system-x86 boots a Debian 12 guest (the
# Debian kernel, pcscd, libccid, pcsc-tools; scripts/qemu-ccid-image.sh
# builds it once into ~/.cache/cardshare-qemu) with two usb-ccid readers on
# qemu-xhci, each with a ccid-card-passthru card. On the host: a private
# pcscd with vsmartcard's vpcd, the project's test card in one reader and a
# T=1-only card in the other, and the bridge between them, dialing one
# chardev (TCP on loopback; QEMU listens, server=on,nodelay=on) and
# listening on the other (a Unix socket; QEMU connects, reconnect=1).
#
# The guest's init runs pcsc_scan -r, the hello-world APDUs on both readers,
# a benchmark, the response and command size limits, and waits for the host
# to remove the card; everything it prints appears here as "serial: ..."
# lines. At the end a table compares APDU round trips in the guest with the
# same card on the host and through the bridge without the guest.
#
# TCG by default (nested KVM fails on this machine); CARDSHARE_QEMU_ACCEL=kvm
# tries KVM. Needs root, the Debian mirror the first time, and about 5
# minutes (the image build about 10 more the first time).
#
# Usage: scripts/qemu-ccid.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "qemu-ccid: needs root (pcscd's namespaces, debootstrap)" >&2
	exit 1
fi
command -v qemu-system-x86_64 >/dev/null || apt-get install -y --no-install-recommends qemu-system-x86
scripts/install-test-deps.sh
dir=$(scripts/qemu-ccid-image.sh | tail -n 1)
CARDSHARE_QEMU_GUEST=$dir go test -count=1 -run '^TestQEMUGuest$' -timeout 20m -v "$@" ./internal/ccid 2>&1 |
	grep -v 'level=DEBUG'
