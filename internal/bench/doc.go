// Package bench measures how fast APDUs cross each way of reaching the host
// pcscd from a guest, on the real parts: Debian's pcscd with the virtual
// card, OpenSSH's sshd on loopback as the guest, and a C client on the real
// libpcsclite (package testenv).
//
// The package has no code of its own, only benchmarks. BenchmarkPaths runs
// the client's bench mode in rounds, round-robin over the paths, so that all
// of them see the same machine load, and prints a markdown table with each
// path's APDU rate as a multiple of the direct path measured in the same run:
// absolute figures move ±20 % between runs, ratios much less. For the paths
// whose host side is a process of its own (ssh, and cardshare run as
// `cardshare expose`) it also counts that process's CPU time and context
// switches per APDU, which hardly depend on the machine's load. BenchmarkPipe
// measures one bridge.Pipe hop without SSH and its allocations per message.
//
// With -count N, both BenchmarkPaths and BenchmarkRelay end with a counting
// pass (count_test.go): N more APDUs per path with every process on it
// watched, for system calls (perf stat), CPU, sleeps and loopback TCP
// segments per APDU. The reports give ratios round by round too, which a
// shared machine needs. For development, CS_STRACE_DIR and CS_PERF_DIR make
// the counting pass write strace logs or perf recordings of each process
// there.
//
// Run it with scripts/bench.sh, or:
//
//	go test -run '^$' -bench Paths -benchtime 1x ./internal/bench -args -rounds=5 -apdus=3000
//
// BenchmarkScale (scripts/scale.sh) runs one `cardshare up` with a hundred
// guests on one sshd and a client on every guest at once: start-up time,
// RSS, threads, descriptors and CPU idle and under load, aggregate and
// per-guest APDU rates. BenchmarkSoak (scripts/soak.sh) sends a million
// APDUs through one guest and samples the relay after every client run.
// BenchmarkNative compares the native backend (internal/nativepcsc over
// libpcsclite, served as bridge.Config.Local) with the socket backend and
// with the native backend through the socket pair of Source.Dial, each
// host side in a process of its own (testdata/hostserve), and measures
// what an idle guest connection costs each; BenchmarkPaths runs `expose
// --backend native` as the path cardshare-cli-native.
package bench
