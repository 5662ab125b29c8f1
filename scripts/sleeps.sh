#!/usr/bin/env bash
# Sorts a relay process's sleeps by what it did since its previous sleep,
# from a perf recording of its system calls and context switches, such as
# the counting pass of scripts/bench.sh writes with
#
#   CS_PERF_DIR=/tmp/cs-perf \
#   CS_PERF_ARGS="-e raw_syscalls:sys_enter -e sched:sched_switch" \
#       scripts/bench.sh -r 1 -n 300 -p cardshare-cli -c 2000
#   scripts/sleeps.sh /tmp/cs-perf/cardshare-cli-cardshare-*.data 2000
#
# Each line is one kind of sleep of one thread: the reads (r) and writes (w)
# it made since its previous sleep, with their descriptors ("none": it was
# woken and slept again without reading or writing anything), how many such
# sleeps there were (per APDU when APDUS is given), and which tasks the CPU
# went to next (a relay that sleeps and hands the CPU to pcscd had woken on
# pcscd's CPU and preempted it).
#
# usage: scripts/sleeps.sh PERF_DATA [APDUS]
set -euo pipefail
if [ $# -lt 1 ]; then
	awk '/^# usage:/ { sub(/^# ?/, ""); print }' "$0" >&2
	exit 2
fi
perf script -i "$1" -F tid,event,trace 2>/dev/null | awk -v apdus="${2:-0}" '
$2 == "raw_syscalls:sys_enter:" && ($4 == "0" || $4 == "1") {
	fd = $5
	gsub(/[(,]/, "", fd)
	seq[$1] = seq[$1] (seq[$1] == "" ? "" : " ") ($4 == "0" ? "r" : "w") fd
	next
}
$2 == "sched:sched_switch:" && /prev_state=S / {
	k = seq[$1] == "" ? "none" : seq[$1]
	n[$1 SUBSEP k]++
	total[$1]++
	split($0, parts, "next_comm=")
	split(parts[2], nc, " ")
	nxt[$1 SUBSEP k SUBSEP nc[1]]++
	seq[$1] = ""
}
END {
	for (tk in n) {
		split(tk, a, SUBSEP)
		if (total[a[1]] < 100 || n[tk] * 50 < total[a[1]])
			continue
		who = ""
		for (x in nxt) {
			split(x, b, SUBSEP)
			if (b[1] == a[1] && b[2] == a[2] && nxt[x] * 5 >= n[tk])
				who = who (who == "" ? "" : ", ") b[3] " " nxt[x]
		}
		per = apdus > 0 ? sprintf("%.2f", n[tk] / apdus) : n[tk]
		printf "%s\t%s\t%s\t%s\tnext: %s\n", a[1], total[a[1]], per, a[2], who
	}
}' | sort -k1,1n -k3,3gr | awk -F '\t' '
BEGIN { print "thread\tsleeps\tthis kind\tio since the previous sleep\twho ran next" }
{ print }'
