//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/bridge"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/testenv"
)

// The paths of BenchmarkProxy.
const (
	pathServeBytes = "serve-bytes"
	pathServeProxy = "serve-proxy"
)

var proxyPathNames = map[string]string{
	pathDirect:     "direct",
	pathServeBytes: "bridge.Serve, byte relay",
	pathServeProxy: "bridge.Serve, proxy (reader policy)",
}

// BenchmarkProxy measures what the protocol-aware stage costs against the
// byte relay, in one run against the same pcscd and card, rounds
// interleaved as in BenchmarkPaths: the direct socket; bridge.Serve on a
// Unix socket piping bytes; and bridge.Serve with a reader policy that
// shows the card's reader, so that every message is parsed by proxy.Proxy.
// Both relays run in this process with the same dial function, so the
// difference between them is the stage alone. The target is the proxy
// within 10 % of the byte relay's APDU/s.
//
//	go test -run '^$' -bench 'Proxy$' -benchtime 1x ./internal/bench -args -rounds=5 -apdus=3000
func BenchmarkProxy(b *testing.B) {
	p := testenv.StartPCSCD(b)
	p.InsertCard(b)
	bin := testenv.BuildClient(b)
	daemon, err := pcsc.Probe(context.Background(), p.Socket)
	if err != nil {
		b.Fatal(err)
	}
	paths := []*path{
		{id: pathDirect, socket: p.Socket, apdus: *flagAPDUs},
		{id: pathServeBytes, socket: startServe(b, p.Socket, bridge.Config{Daemon: daemon}), apdus: *flagAPDUs},
		{id: pathServeProxy, socket: startServe(b, p.Socket, bridge.Config{Daemon: daemon,
			Policy: &pcsc.Policy{Readers: []string{testenv.VPCDReader}}}), apdus: *flagAPDUs},
	}
	for _, pt := range paths {
		waitReady(b, bin, pt.socket)
		if *flagWarmup > 0 {
			runBench(b, bin, pt, *flagWarmup)
		}
	}
	fmt.Println(machine(b, p, nil))
	// This process runs the relays and the virtual card: its CPU time per
	// APDU, less the direct path's (the card alone), is the relay's, and
	// hardly depends on the machine's load, unlike APDU/s.
	cpu := make([]time.Duration, len(paths))
	start := time.Now()
	for round := range *flagRounds {
		for i := range paths {
			k := (round + i) % len(paths)
			pt := paths[k]
			c0 := processCPU()
			pt.runs = append(pt.runs, runBench(b, bin, pt, pt.apdus))
			cpu[k] += processCPU() - c0
		}
	}
	elapsed := time.Since(start)
	cardCPU := float64(cpu[0].Nanoseconds()) / float64(summarize(paths[0].runs).count) / 1e3

	var t strings.Builder
	fmt.Fprintf(&t, "\n%d rounds, interleaved, in %v\n\n", *flagRounds, elapsed.Round(100*time.Millisecond))
	t.WriteString("| path | APDUs | APDU/s | × direct | × byte relay | median µs | p99 µs | relay CPU µs/APDU | APDU/s by round |\n")
	t.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	direct, bytesS := summarize(paths[0].runs), summarize(paths[1].runs)
	relayCPU := make([]float64, len(paths))
	for k, pt := range paths {
		s := summarize(pt.runs)
		var rounds []string
		for _, r := range pt.runs {
			rounds = append(rounds, fmt.Sprintf("%.0f", r.PerSec))
		}
		relayCPU[k] = float64(cpu[k].Nanoseconds())/float64(s.count)/1e3 - cardCPU
		rc := "–"
		if k > 0 {
			rc = fmt.Sprintf("%.1f", relayCPU[k])
			b.ReportMetric(relayCPU[k], pt.id+"-cpu-us/APDU")
		}
		fmt.Fprintf(&t, "| %s | %d | %.0f | %s | %s | %.0f | %.0f | %s | %s |\n", proxyPathNames[pt.id], s.count, s.perSec,
			formatRatio(s.perSec/direct.perSec), formatRatio(s.perSec/bytesS.perSec), s.medianUS, s.p99US, rc, strings.Join(rounds, " "))
		b.ReportMetric(s.perSec, pt.id+"-APDU/s")
		b.ReportMetric(s.medianUS, pt.id+"-median-us")
	}
	proxyS := summarize(paths[2].runs)
	fmt.Fprintf(&t, "\nproxy ÷ byte relay: %.3f× APDU/s, median %+.1f µs, relay CPU %.2f×\n",
		proxyS.perSec/bytesS.perSec, proxyS.medianUS-bytesS.medianUS, relayCPU[2]/relayCPU[1])
	fmt.Println(t.String())
	b.ReportMetric(proxyS.perSec/bytesS.perSec, "proxy-x-bytes")
	b.ReportMetric(0, "ns/op")
}

// startServe runs bridge.Serve from a new guest socket to the pcscd socket
// until the benchmark ends, and returns the guest socket.
func startServe(b *testing.B, pcscd string, cfg bridge.Config) string {
	b.Helper()
	socket := filepath.Join(sockDir(b), "guest.comm")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, ln, hostpcsc.Socket{Path: pcscd}.Dial, &cfg) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Serve: %v", err)
		}
	})
	return socket
}

// BenchmarkServeHop measures one bridge.Serve hop without pcscd, between
// Unix sockets, with the messages of one SCardTransmit of a 5-byte APDU as
// libpcsclite 1.9.9 and pcscd write them (as BenchmarkPipe): "bytes" is
// the byte relay, "proxy" the same Serve with a reader policy, so that
// proxy.Proxy parses every message. An op is one round trip; allocs/op is
// what relaying one costs the garbage collector, in both directions.
//
//	go test -run '^$' -bench ServeHop -benchmem ./internal/bench
func BenchmarkServeHop(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  bridge.Config
	}{
		{"bytes", bridge.Config{Daemon: pcsc.Daemon{Version: pcsc.V44}}},
		{"proxy", bridge.Config{Daemon: pcsc.Daemon{Version: pcsc.V44}, Policy: &pcsc.Policy{Readers: []string{"Virtual*"}}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			daemon := filepath.Join(sockDir(b), "pcscd.comm")
			ln, err := net.Listen("unix", daemon)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ln.Close() })
			go fakeTransmitDaemon(ln)
			guest := startServe(b, daemon, c.cfg)
			client, err := net.Dial("unix", guest)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			var vbuf [12]byte
			client.Write(pcsc.AppendVersionRequest(nil, pcsc.V44))
			if r, err := pcsc.ReadVersionReply(client, &vbuf); err != nil || !r.Accepted() {
				b.Fatalf("CMD_VERSION: %+v, %v", r, err)
			}
			req := make([]byte, 8+32+5)
			copy(req, []byte{32, 0, 0, 0, pcsc.CmdTransmit, 0, 0, 0})
			req[8+12] = 5 // cbSendLength
			reply := make([]byte, 32+14)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				for _, m := range [][]byte{req[:8], req[8:40], req[40:]} {
					if _, err := client.Write(m); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := io.ReadFull(client, reply); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time hardly depends on the machine's load, unlike
			// ns/op; client, relay and fake daemon are all counted.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fakeTransmitDaemon answers CMD_VERSION and then every 45-byte transmit
// with a 32-byte struct and 14 bytes of response, as two writes, allocating
// nothing per message.
func fakeTransmitDaemon(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var buf [pcsc.OpeningMax]byte
			if _, _, err := pcsc.ReadOpening(c, &buf); err != nil {
				return
			}
			c.Write(pcsc.AppendVersionReply(nil, pcsc.VersionReply{Version: pcsc.V44}))
			in := make([]byte, 8+32+5)
			st := make([]byte, 32)
			st[24] = 14 // pcbRecvLength
			data := []byte("Hello world!\x90\x00")
			for {
				if _, err := io.ReadFull(c, in); err != nil {
					return
				}
				if _, err := c.Write(st); err != nil {
					return
				}
				if _, err := c.Write(data); err != nil {
					return
				}
			}
		}()
	}
}
