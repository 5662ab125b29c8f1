#!/usr/bin/env bash
# The soak: APDUS APDUs through one guest, in client runs of CHUNK APDUs
# (each a new pcsc-lite connection), with zero errors allowed, sampling the
# relay after every run (internal/bench BenchmarkSoak). Prints RSS, threads
# and descriptors of a `cardshare expose` process, and goroutines of
# forward.Expose run in the test process, at the start and the end. Needs
# root and what scripts/install-test-deps.sh installs. Not part of CI: the
# default million APDUs per path take 6 to 8 minutes each on 2 cores; -n
# 50000 shows the same table in seconds.
#
# usage: scripts/soak.sh [-n APDUS] [-c CHUNK] [-p PATHS] [-e CLI_ENV]
#                        [-- GO_TEST_FLAGS...]
#   -n  APDUs per path (default 1000000)
#   -c  APDUs per client run (default 100000)
#   -p  comma-separated paths: cardshare-cli (the process), cardshare
#       (in-process, counts goroutines); default both
#   -e  comma-separated VAR=value for the cardshare process, e.g. GOMAXPROCS=2
# The same settings can come from the environment: APDUS, CHUNK, PATHS,
# CLI_ENV. Flags after -- go to go test, e.g. -- -v.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { awk '/^# usage:/ { on = 1 } on && !/^#/ { exit } on { sub(/^# ?/, ""); print }' "$0"; }

apdus=${APDUS:-1000000}
chunk=${CHUNK:-100000}
paths=${PATHS:-cardshare-cli,cardshare}
cli_env=${CLI_ENV:-}
while getopts n:c:p:e:h opt; do
	case $opt in
	n) apdus=$OPTARG ;;
	c) chunk=$OPTARG ;;
	p) paths=$OPTARG ;;
	e) cli_env=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
if [ "$chunk" -gt "$apdus" ]; then chunk=$apdus; fi

go test -run '^$' -bench '^BenchmarkSoak$' -benchtime 1x -timeout 2h "$@" ./internal/bench \
	-args -soak-apdus="$apdus" -soak-chunk="$chunk" -soak-paths="$paths" -cli-env="$cli_env"
