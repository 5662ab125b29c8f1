#!/usr/bin/env bash
# Installs the Debian packages that cardshare's end-to-end tests run:
# internal/testenv starts the real pcscd with vsmartcard's vpcd reader driver,
# builds a C client against libpcsclite, and runs OpenSSH's sshd; and
# qemu-user for the arm64 offload loop's tests.
#
# Run as root on Debian 12. The script is idempotent: when everything is
# installed it only asks dpkg, so it is quick and needs neither root nor a
# network.
set -euo pipefail

packages=(
	pcscd
	libpcsclite-dev
	vsmartcard-vpcd
	openssh-server
	openssh-client
	pcsc-tools
	socat
	gcc
	# gcc only recommends the C library headers, and --no-install-recommends
	# skips recommendations.
	libc6-dev
	# How the client build asks for libpcsclite's flags; testenv falls back to
	# Debian's flags without it.
	pkg-config
	# internal/scard's offload loop for linux/arm64 runs its tests under
	# qemu-user with an arm64 C library (scripts/test.sh).
	qemu-user
	libc6-arm64-cross
)

# One dpkg-query for all: it prints "ii  NAME" for each installed package
# and nothing for unknown ones.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
	if ! grep -qx "ii  $p" <<<"$installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-test-deps: all ${#packages[@]} packages are installed"
	exit 0
fi

echo "install-test-deps: installing ${missing[*]}"
if ((EUID != 0)); then
	echo "install-test-deps: error: installing packages needs root" >&2
	echo "install-test-deps: hint: sudo $0" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
