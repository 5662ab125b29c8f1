#!/usr/bin/env bash
# Runs the Windows builds of the host-side packages' tests under Wine
# (opt-in; not part of scripts/test.sh): sshpaths (the agent's named-pipe
# dialer against a pipe server made by the test, fileConn through
# nettest.TestConn), service (the task file written and registered with
# Wine's schtasks, which parses the XML but keeps only part of it) and
# hostcheck (the service manager query). What Wine cannot run is skipped
# and says so: the OpenSSH agent service, Pageant, AF_UNIX sockets, and
# listing \\.\pipe\ (Wine answers "Bad device type").
#
# Needs wine64, which it installs with apt-get when it is missing (as
# scripts/version-matrix.sh installs its tools; no CI script installs
# Wine). Go's runtime needs bcryptprimitives.dll (ProcessPrng), which
# Wine 8 (Debian bookworm) lacks and Wine 9+ has; for Wine 8 this script
# builds a stub over RtlGenRandom with x86_64-w64-mingw32-gcc, installing
# gcc-mingw-w64-x86-64-win32 for that when it is missing.
# The Wine prefix lives in $CARDSHARE_WINEPREFIX (default
# ~/.cache/cardshare/wine-hostside).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

# need PROGRAM PACKAGE installs PACKAGE when PROGRAM is missing, as root.
need() {
	command -v "$1" >/dev/null && return
	if [ "$(id -u)" != 0 ]; then
		echo "wine-hostside: no $1; as root: apt-get install --no-install-recommends $2" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null; }
}

wine=$(command -v wine64 || command -v wine || ls /usr/lib/wine/wine64 2>/dev/null || true)
if [ -z "$wine" ]; then
	need wine64 wine64
	wine=$(command -v wine64 || command -v wine || ls /usr/lib/wine/wine64 2>/dev/null || true)
	[ -n "$wine" ] || { echo "wine-hostside: wine64 installed, but no wine program found" >&2; exit 1; }
fi
export WINEPREFIX=${CARDSHARE_WINEPREFIX:-$HOME/.cache/cardshare/wine-hostside}
export WINEDEBUG=-all
mkdir -p "$WINEPREFIX"
"$wine" cmd /c exit >/dev/null 2>&1 || true # create the prefix

sys32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -e "$sys32/bcryptprimitives.dll" ]; then
	need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64-win32
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cat >"$tmp/bcp.c" <<'C'
#include <windows.h>
/* Stub of bcryptprimitives.dll for Wine 8: Go's runtime needs ProcessPrng.
   SystemFunction036 is advapi32's RtlGenRandom. */
BOOLEAN WINAPI SystemFunction036(PVOID, ULONG);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
C
	x86_64-w64-mingw32-gcc -shared -o "$sys32/bcryptprimitives.dll" "$tmp/bcp.c" -ladvapi32
	echo "wine-hostside: built a bcryptprimitives.dll stub into $sys32"
fi

out=$(mktemp -d)
for pkg in sshpaths service hostcheck; do
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go test -c -o "$out/$pkg.test.exe" "./internal/$pkg"
	echo "== internal/$pkg under $("$wine" --version 2>/dev/null || echo wine)"
	(cd "internal/$pkg" && CARDSHARE_TEST_SCHTASKS=1 timeout 600 "$wine" "$out/$pkg.test.exe" -test.v -test.count=1) | grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+\S+_test\.go:)' | grep -v '^=== RUN'
done
rm -rf "$out"
