#!/usr/bin/env bash
# Runs the real-QEMU rig of the QEMU CCID bridge (internal/ccid,
# TestQEMUGuest) through the CLI: Debian's qemu-system-x86 boots a Debian 12
# guest (the Debian kernel, pcscd, libccid, pcsc-tools;
# scripts/qemu-ccid-image.sh builds it once into ~/.cache/cardshare-qemu)
# with three usb-ccid readers on qemu-xhci, each with a ccid-card-passthru
# card. On the host: a private pcscd with vsmartcard's vpcd, the project's
# test card in one reader and a T=1-only card in the other, and cardshare
# (built from ./cmd/cardshare) running as three `cardshare qemu attach`
# processes: one dials QEMU's TCP chardev on loopback (server=on,nodelay=on)
# for the test card, one listens on a Unix socket QEMU connects to
# (reconnect=1) for the T=1-only card, and one more with --t1 shows that
# card's own T=1-only ATR. The test stops them with SIGTERM by PID.
#
# The guest's init runs pcsc_scan -r, the hello-world APDUs on both readers,
# a benchmark, the response and command size limits, and waits for the host
# to remove the card; everything it prints appears here as "serial: ..."
# lines. At the end a table compares APDU round trips in the guest with the
# same card on the host and through the bridge without the guest.
#
# TCG by default (nested KVM fails on this machine); CARDSHARE_QEMU_ACCEL=kvm
# tries KVM. Needs root, the Debian mirror the first time, and a few
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
