#!/usr/bin/env bash
# Measures APDU round trips from the real libpcsclite to the real pcscd and
# virtual card: directly, through `ssh -N -R`, through `ssh -R` with a
# session, and through cardshare expose (in the test process, and as a
# `cardshare expose` process), in one run with interleaved rounds
# (internal/bench BenchmarkPaths), then one bridge.Pipe hop alone
# (BenchmarkPipe). With -N it then compares the host-side backends without
# SSH (BenchmarkNative: socket, native, and native through the socket pair
# it no longer uses) and what an idle guest connection costs each. Needs
# root and what scripts/install-test-deps.sh installs.
#
# usage: scripts/bench.sh [-r ROUNDS] [-n APDUS] [-s SLOW_APDUS] [-p PATHS]
#                         [-e CLI_ENV] [-P PROFILE_FILE] [-b BASELINE_BINARY]
#                         [-c COUNT_APDUS] [-d CARD_DELAY] [-N]
#                         [-- GO_TEST_FLAGS...]
#   -r  measured rounds, each running every path once (default 5)
#   -n  APDUs per round and path (default 3000)
#   -s  APDUs per round on the `ssh -N -R` path, ~140 APDU/s (default 300)
#   -p  comma-separated paths, of direct,ssh-N,ssh-session,cardshare,
#       cardshare-cli, cardshare-cli-native (`expose --backend native`) and
#       the references socat (Unix → Unix) and socat-tcp (Unix → TCP →
#       Unix), or all (default: all but the references)
#   -e  comma-separated VAR=value for the cardshare-cli process, e.g.
#       GOMAXPROCS=1
#   -P  after the rounds, profile 20000 APDUs through cardshare alone and
#       write the CPU profile to this file (go tool pprof -top FILE)
#   -b  also run this cardshare binary of another build (before a change)
#       as a process, interleaved with this build's, and print this build ÷
#       it (same-run ratios)
#   -c  after the rounds, run this many APDUs per path once more and count
#       system calls (perf stat), CPU, sleeps and loopback TCP segments per
#       APDU of every process on the path (needs perf and ss)
#   -d  the virtual card takes this long to answer each APDU (a Go duration,
#       e.g. 2ms; a PIV card or YubiKey takes some 2 to 20 ms), as a real
#       card does; default 0, at once, so that the paths bound the rate
#   -N  also run BenchmarkNative, with the same rounds, APDUs and card delay
# The same settings can come from the environment: ROUNDS, APDUS, SLOW_APDUS,
# PATHS, CLI_ENV, PROFILE, BASELINE, COUNT, CARD_DELAY, NATIVE=1. Flags after -- go to go test,
# e.g. -- -v.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { awk '/^# usage:/ { on = 1 } on && !/^#/ { exit } on { sub(/^# ?/, ""); print }' "$0"; }

rounds=${ROUNDS:-5}
apdus=${APDUS:-3000}
slow=${SLOW_APDUS:-300}
paths=${PATHS:-}
cli_env=${CLI_ENV:-}
profile=${PROFILE:-}
baseline=${BASELINE:-}
count=${COUNT:-0}
delay=${CARD_DELAY:-0}
native=${NATIVE:-}
while getopts r:n:s:p:e:P:b:c:d:Nh opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	n) apdus=$OPTARG ;;
	s) slow=$OPTARG ;;
	p) paths=$OPTARG ;;
	e) cli_env=$OPTARG ;;
	P) profile=$OPTARG ;;
	b) baseline=$OPTARG ;;
	c) count=$OPTARG ;;
	d) delay=$OPTARG ;;
	N) native=1 ;;
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

if [ -n "$baseline" ]; then
	case $baseline in /*) ;; *) baseline=$PWD/$baseline ;; esac
fi
if [ -n "$profile" ]; then
	# The test binary runs in the package directory.
	case $profile in /*) ;; *) profile=$PWD/$profile ;; esac
fi

go test -run '^$' -bench '^BenchmarkPaths$' -benchtime 1x -timeout 30m "$@" ./internal/bench \
	-args -rounds="$rounds" -apdus="$apdus" -slow-apdus="$slow" -paths="$paths" -cli-env="$cli_env" \
	-cardshare-cpuprofile="$profile" -baseline-bin="$baseline" -count="$count" -card-delay="$delay"
go test -run '^$' -bench '^BenchmarkPipe$' -benchtime 2s "$@" ./internal/bench
if [ -n "$native" ]; then
	go test -run '^$' -bench '^BenchmarkNative$' -benchtime 1x -timeout 30m "$@" ./internal/bench \
		-args -rounds="$rounds" -apdus="$apdus" -card-delay="$delay"
fi
