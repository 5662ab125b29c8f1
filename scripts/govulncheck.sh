#!/usr/bin/env bash
# govulncheck against an offline vulnerability database: only the Go module
# proxy is reachable here, and it serves the database as the
# golang.org/x/vulndb module. The index is cached outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
VULNDB=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK=v1.9.0
db=${CARDSHARE_VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cardshare/vulndb-$VULNDB}
if [ ! -f "$db/index/db.json" ] && [ ! -f "$db/index/db.json.gz" ]; then
	go mod download golang.org/x/vulndb@$VULNDB
	rm -rf "$db.tmp"
	mkdir -p "$db.tmp"
	GOFLAGS=-mod=mod go run golang.org/x/vulndb/cmd/indexdb@$VULNDB \
		-vulns "$(go env GOMODCACHE)/golang.org/x/vulndb@$VULNDB/data/osv" -out "$db.tmp"
	rm -rf "$db"
	mv "$db.tmp" "$db"
fi
go run golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK -db "file://$db" ./...
