package guestsock

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/unixsock"
)

// Keeper is a session kept open for the life of a forward: a POSIX shell
// that waits on its standard input for scripts. It does four jobs, all in
// the one shell, so that a guest costs its sshd one session and one shell
// (a hundred guests start at once on one sshd, where each process counts).
// It prepares the guest socket path (Prepare). Its session makes sshd
// turn on TCP_NODELAY for the connection (packet_set_interactive in
// OpenSSH), which a bare forward never does: without it, round trips stall
// 40 ms on Nagle and delayed ACKs. It reads the guest's OS and pcsc-lite
// release once the guest socket is there (Probe), so that a package
// manager's start-up does not delay the socket. And the guest socket is
// removed through it on the way out (Remove): opening a new session then
// fails on an sshd that is loaded or already tearing the connection down,
// as when `cardshare up` stops a hundred guests at once.
type Keeper struct {
	s      *ssh.Session
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *syncWriter // the first 4 KiB the shell wrote to stderr
	used   bool        // Remove ran: the shell has exited
}

// syncWriter keeps the first n bytes written to it; x/crypto copies a
// session's stderr from a goroutine of its own.
type syncWriter struct {
	mu sync.Mutex
	b  limitedWriter
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(w.b.w.(*bytes.Buffer).String())
}

// StartKeeper starts the keeper session on c.
func StartKeeper(c *ssh.Client) (*Keeper, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("start keeper session: %w", err)
	}
	stderr := &syncWriter{b: limitedWriter{w: new(bytes.Buffer), n: 4096}}
	s.Stderr = stderr
	in, err := s.StdinPipe()
	var out io.Reader
	if err == nil {
		out, err = s.StdoutPipe()
	}
	if err == nil {
		// Scripts travel on standard input, as with Run; the shell reads
		// and runs each when it is sent.
		err = s.Start("/bin/sh -s")
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start keeper session: %w", err)
	}
	// A guest's shell start-up files may print before the scripts do: at
	// most MaxOutput bytes are read in all.
	return &Keeper{s: s, in: in, out: bufio.NewReader(&cappedReader{r: out, n: MaxOutput}), stderr: stderr}, nil
}

// cappedReader reads up to n bytes from r, then fails with
// ErrOutputTooLarge.
type cappedReader struct {
	r io.Reader
	n int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, ErrOutputTooLarge
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// endLine ends the output of each script that the keeper runs and waits
// for; the scripts print nothing that starts with it.
const endLine = "end-of-cardshare-script="

// script runs script in a subshell of the keeper's shell (so that its
// exit ends only the subshell) with vars assigned, and returns what it
// printed. When ctx ends first, the session is closed.
func (k *Keeper) script(ctx context.Context, script string, vars ...string) ([]byte, error) {
	if k.used {
		return nil, errors.New("keeper already used")
	}
	stop := context.AfterFunc(ctx, func() { k.s.Close() })
	defer stop()
	var in bytes.Buffer
	in.WriteString("(\n")
	for i := 0; i+1 < len(vars); i += 2 {
		fmt.Fprintf(&in, "%s=%s\n", vars[i], Quote(vars[i+1]))
	}
	in.WriteString(script)
	in.WriteString("\n)\nprintf '%s\\n' " + endLine + "\n")
	if _, err := k.in.Write(in.Bytes()); err != nil {
		return nil, k.err(ctx, err)
	}
	var out []byte
	for {
		line, err := k.out.ReadString('\n')
		if errors.Is(err, ErrOutputTooLarge) {
			k.s.Close()
			return nil, err
		}
		if err != nil {
			return nil, k.err(ctx, err)
		}
		if line == endLine+"\n" {
			return out, nil
		}
		out = append(out, line...)
	}
}

func (k *Keeper) err(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		// The shell is gone: wait (briefly) for its stderr to be copied.
		k.used = true
		done := make(chan struct{})
		go func() { k.s.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		err = errors.New("keeper shell ended")
	}
	if msg := k.stderr.String(); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// Prepare chooses and checks the guest socket path as Prepare does, through
// the keeper's shell, without the OS and release (Probe reads those).
func (k *Keeper) Prepare(ctx context.Context, want string) (Info, error) {
	return prepare(want, pathScript, func(script string, vars ...string) ([]byte, error) {
		out, err := k.script(ctx, script, vars...)
		if err != nil {
			return nil, fmt.Errorf("guest script: %w", err)
		}
		return out, nil
	})
}

// Probe reads the guest's OS (uname -s) and pcsc-lite release through the
// keeper's shell, as Prepare does; only OS and Release of the Info are
// set. When ctx ends first, the session is closed: Remove then fails, and
// the caller falls back to a new session.
func (k *Keeper) Probe(ctx context.Context) (Info, error) {
	out, err := k.script(ctx, probeScript)
	if err != nil {
		return Info{}, fmt.Errorf("probe guest: %w", err)
	}
	g, _, _ := scanInfo(out)
	return Info{OS: g.OS, Release: g.Release}, nil
}

// Remove removes the socket at sock in the guest, if a socket is there,
// through the keeper's shell, which then exits. It waits for the shell's
// exit status until ctx is done. The keeper serves one Remove, its last
// job.
func (k *Keeper) Remove(ctx context.Context, sock string) error {
	if k.used {
		return fmt.Errorf("remove %s: keeper already used", sock)
	}
	k.used = true
	stop := context.AfterFunc(ctx, func() { k.s.Close() })
	defer stop()
	script := "sock=" + Quote(sock) + "\nmaxdir=" + strconv.Itoa(unixsock.MaxDir) + "\n" + removeScript
	if _, err := io.Copy(k.in, strings.NewReader(script)); err != nil {
		return fmt.Errorf("remove %s: %w", sock, err)
	}
	k.in.Close()
	if err := k.s.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("remove %s: %w", sock, ctx.Err())
		}
		return fmt.Errorf("remove %s: %w", sock, err)
	}
	return nil
}

// Close ends the keeper session.
func (k *Keeper) Close() error { return k.s.Close() }
