#!/usr/bin/env bash
# The scale benchmark: one `cardshare up` process exposing the host pcscd to
# GUESTS guests, all served by one real sshd on loopback (each guest its own
# socket), then a C client on the real libpcsclite on every guest at once
# (internal/bench BenchmarkScale). Prints start-up time, the process's RSS,
# threads, descriptors and CPU idle and under load, the aggregate APDU rate
# next to the same clients on the host socket directly, each guest's rate,
# and (in-process run) goroutines. Needs root and what
# scripts/install-test-deps.sh installs. Not part of CI: a run takes about two
# minutes on 2 cores.
#
# The virtual card answers at once, so by default the run measures what the
# path costs in CPU. With -d it takes that long per APDU, as a real card does
# (a PIV card or YubiKey takes 2-20 ms), and the reader, which answers one
# APDU at a time, is the bound that cardshare should reach: compare its
# APDU/s with the direct clients' in the same run.
#
# usage: scripts/scale.sh [-g GUESTS] [-n APDUS] [-d DELAY] [-i IDLE] [-e CLI_ENV]
#                         [-B BACKEND] [-P] [-- GO_TEST_FLAGS...]
#   -g  guests (default 100)
#   -n  APDUs per guest client (default 500; 50 with -d)
#   -d  the card's time per APDU, e.g. 5ms (default 0: at once)
#   -i  how long to watch the idle process for its CPU use (default 10s)
#   -e  comma-separated VAR=value for the cardshare process, e.g. GOMAXPROCS=2
#   -B  the host backend of `cardshare up`: socket (default) or native
#   -P  skip the in-process run that counts goroutines
# The same settings can come from the environment: GUESTS, APDUS,
# CARD_DELAY, IDLE, CLI_ENV, BACKEND. Flags after -- go to go test, e.g. -- -v.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { awk '/^# usage:/ { on = 1 } on && !/^#/ { exit } on { sub(/^# ?/, ""); print }' "$0"; }

guests=${GUESTS:-100}
apdus=${APDUS:-}
delay=${CARD_DELAY:-0}
idle=${IDLE:-10s}
cli_env=${CLI_ENV:-}
backend=${BACKEND:-socket}
inproc=true
while getopts g:n:d:i:e:B:Ph opt; do
	case $opt in
	g) guests=$OPTARG ;;
	n) apdus=$OPTARG ;;
	d) delay=$OPTARG ;;
	i) idle=$OPTARG ;;
	e) cli_env=$OPTARG ;;
	B) backend=$OPTARG ;;
	P) inproc=false ;;
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
if [[ -z $apdus ]]; then
	# With a 5 ms card, 100 guests of 50 APDUs take about 25 s per run.
	if [[ $delay == 0 || $delay == 0s ]]; then apdus=500; else apdus=50; fi
fi

go test -run '^$' -bench '^BenchmarkScale$' -benchtime 1x -timeout 30m "$@" ./internal/bench \
	-args -scale-guests="$guests" -scale-apdus="$apdus" -scale-idle="$idle" -scale-inproc="$inproc" -card-delay="$delay" -cli-env="$cli_env" -scale-backend="$backend"
