package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pcscClientSource is testdata/pcscclient.c, embedded so that tests of any
// package can build it whatever their working directory.
//
//go:embed testdata/pcscclient.c
var pcscClientSource []byte

// ClientTimeout bounds a RunClient run.
const ClientTimeout = 60 * time.Second

// pcscClientFlags are the compiler flags when pkg-config is missing; they are
// what pkg-config says for Debian's libpcsclite-dev.
var pcscClientFlags = []string{"-I/usr/include/PCSC", "-pthread", "-lpcsclite"}

var pcscClient struct {
	once sync.Once
	path string
	err  error
}

// BuildClient compiles testdata/pcscclient.c, a small C client of the real
// libpcsclite, and returns the path of the binary. The binary is cached under
// the user's cache directory, keyed by its source, so it is built once per
// machine; concurrent test binaries share it safely. BuildClient fails the
// test if gcc or libpcsclite-dev is missing.
//
// The client's modes (see its source for details):
//
//	hello            SELECT the hello-world applet, send 00 00 00 00, print
//	                 "reader: NAME", "response: Hello world!", "sw: 9000"
//	bench N          N round trips; prints key=value stats, see ParseBench
//	wait SECONDS     prints "waiting: STATE", then "changed: STATE events=N"
//	list             prints the reader names, one a line
//
// Each takes an optional "-r READER" first; the default is the first reader.
func BuildClient(t testing.TB) string {
	t.Helper()
	pcscClient.once.Do(func() {
		pcscClient.path, pcscClient.err = buildPCSCClient()
	})
	if pcscClient.err != nil {
		t.Fatalf("testenv: build pcscclient: %v\ntestenv: hint: %s", pcscClient.err, installTestDepsHint)
	}
	return pcscClient.path
}

func buildPCSCClient() (string, error) {
	flags := pcscClientFlags
	if out, err := exec.Command("pkg-config", "--cflags", "--libs", "libpcsclite").Output(); err == nil {
		flags = strings.Fields(string(out))
	}
	args := append([]string{"-O2", "-Wall", "-Wextra"}, flags...)

	h := sha256.New()
	h.Write(pcscClientSource)
	fmt.Fprintf(h, "\x00%q", args)
	key := hex.EncodeToString(h.Sum(nil)[:12])

	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "cardshare-testenv")
	bin := filepath.Join(dir, "pcscclient-"+key)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "pcscclient.c")
	if err := os.WriteFile(src, pcscClientSource, 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(work, "pcscclient")
	// Libraries go after the source file for the linker.
	cmd := exec.Command("gcc", append([]string{"-o", out, src}, args...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc: %w\n%s", err, msg)
	}
	// Rename is atomic: a concurrent build of the same key just replaces
	// an identical file.
	if err := os.Rename(out, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// ClientCommand returns a command that runs the client bin with args against
// the pcscd socket at socket (through PCSCLITE_CSOCK_NAME). Use it to run the
// client in the background; RunClient covers the rest.
func ClientCommand(ctx context.Context, bin, socket string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	env := []string{"PCSCLITE_CSOCK_NAME=" + socket}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PCSCLITE_CSOCK_NAME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// RunClient runs the client bin with args against the pcscd socket at socket
// and returns what it printed on stdout. If the client fails or runs longer
// than ClientTimeout, the error is a *ClientError holding its stderr, where
// it prints the PC/SC error with its code, such as
// "pcscclient: SCardConnect: No smart card inserted. (0x8010000C)".
func RunClient(t testing.TB, bin, socket string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), ClientTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := ClientCommand(ctx, bin, socket, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %v", ctx.Err(), ClientTimeout)
		}
		return stdout.String(), &ClientError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// ClientError is a failed client run.
type ClientError struct {
	Args   []string
	Stderr string
	Err    error // an *exec.ExitError, or why the client did not run
}

func (e *ClientError) Error() string {
	return fmt.Sprintf("pcscclient %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *ClientError) Unwrap() error { return e.Err }

// ExitCode is the client's exit status, or -1 if it did not exit normally.
func (e *ClientError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Bench is the result line of the client's bench mode.
type Bench struct {
	Count    int     // round trips
	MedianUS float64 // median round trip, µs
	P99US    float64 // 99th percentile, µs
	MaxUS    float64 // slowest round trip, µs
	PerSec   float64 // APDUs per second over the whole run
	Over10ms int     // round trips slower than 10 ms: Nagle and delayed-ACK stalls show here
	TotalMS  float64 // the whole run, ms
}

// ParseBench reads the line that "pcscclient bench N" prints.
func ParseBench(out string) (Bench, error) {
	var b Bench
	line := strings.TrimSpace(out)
	_, err := fmt.Sscanf(line, "count=%d median_us=%g p99_us=%g max_us=%g apdu_per_s=%g over_10ms=%d total_ms=%g",
		&b.Count, &b.MedianUS, &b.P99US, &b.MaxUS, &b.PerSec, &b.Over10ms, &b.TotalMS)
	if err != nil {
		return Bench{}, fmt.Errorf("testenv: parse bench output %q: %w", line, err)
	}
	return b, nil
}

func (b Bench) String() string {
	return fmt.Sprintf("%d APDUs: %.0f APDU/s, median %.0f µs, p99 %.0f µs, max %.0f µs, %d over 10 ms",
		b.Count, b.PerSec, b.MedianUS, b.P99US, b.MaxUS, b.Over10ms)
}
