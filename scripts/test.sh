#!/usr/bin/env bash
# Runs every check and test of cardshare, the way CI does: installs the test
# dependencies (Debian/Ubuntu, as root), then formatting, module tidiness,
# vet, staticcheck, govulncheck, all tests with the race detector (the
# end-to-end tests run real pcscd, libpcsclite and sshd), a short fuzz run per
# fuzz target, the cross-builds, and one tiny run of every benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build and test with the toolchain go.mod names (it carries the standard
# library's security fixes), fetched from the Go module proxy if needed.
export GOTOOLCHAIN=auto

step() { printf '\n== %s\n' "$*"; }

step "test dependencies"
scripts/install-test-deps.sh

step "gofmt"
out=$(gofmt -l .)
if [ -n "$out" ]; then echo "gofmt would change:"; echo "$out"; exit 1; fi

step "go mod tidy"
go mod tidy -diff

step "go vet"
go vet ./...
# Also on macOS and Windows, the other host systems: build tags must keep
# Linux-only (and Unix-only) test helpers out of them.
GOOS=darwin go vet ./...
CGO_ENABLED=0 GOOS=windows go vet ./...
CGO_ENABLED=0 GOOS=windows GOARCH=arm64 go vet ./...

step "staticcheck"
go tool staticcheck ./...

step "govulncheck"
scripts/govulncheck.sh

step "cross-builds"
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64 netbsd/amd64; do
	GOOS=${target%/*} GOARCH=${target#*/} CGO_ENABLED=0 go build -o /dev/null ./cmd/cardshare
	echo "$target ok"
done
# -tags nonative leaves the native backend (and purego, which links libc
# dynamically) out: the Linux binary is then fully static.
tmp=$(mktemp -d)
CGO_ENABLED=0 go build -tags nonative -o "$tmp/cardshare" ./cmd/cardshare
if ldd "$tmp/cardshare" >/dev/null 2>&1; then
	ldd "$tmp/cardshare"
	echo "-tags nonative: the binary is not static"
	exit 1
fi
rm -rf "$tmp"
echo "linux/amd64 -tags nonative ok (static)"

step "native backend: vet for every host system (CGO_ENABLED=0)"
# internal/scard and internal/nativepcsc are the PC/SC API of Windows,
# macOS and the BSDs as well: each must keep compiling without cgo.
for target in windows/amd64 windows/arm64 darwin/amd64 darwin/arm64 linux/arm64 freebsd/amd64 netbsd/amd64; do
	GOOS=${target%/*} GOARCH=${target#*/} CGO_ENABLED=0 go vet ./internal/scard/... ./internal/nativepcsc ./internal/winehost/testdata/winserve ./internal/matrix/testdata/nativehost
	echo "$target ok"
done

step "offload loop on linux/arm64 (qemu-user)"
# internal/scard's assembly for arm64 runs here under qemu-aarch64 with
# Debian's arm64 C library: the same tests as on amd64, with libc
# functions standing in for libpcsclite.
tmp=$(mktemp -d)
GOARCH=arm64 CGO_ENABLED=0 go test -c -o "$tmp/scard.test" ./internal/scard
qemu-aarch64 -L /usr/aarch64-linux-gnu "$tmp/scard.test" -test.run '^TestOffload' -test.count=1 -test.v | grep -E '^(--- |PASS|FAIL|ok)'
rm -rf "$tmp"

step "short fuzzing"
for pkg in $(go list ./...); do
	for fuzz in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "$pkg $fuzz"
		if ! out=$(go test -run '^$' -fuzz "^${fuzz}\$" -fuzztime "${FUZZTIME:-50000x}" "$pkg" 2>&1); then
			echo "$out"
			exit 1
		fi
	done
done

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "benchmarks, one tiny run each (checks that they work; the numbers mean nothing)"
go test -run '^$' -bench . -benchtime 1x ./internal/pcsc
go test -run '^$' -bench . -benchtime 1x -timeout 10m ./internal/bench -args -rounds=1 -apdus=50 \
	-slow-apdus=20 -warmup=0 -paths=all -scale-guests=5 -scale-apdus=20 -scale-idle=1s \
	-soak-apdus=200 -soak-chunk=100
