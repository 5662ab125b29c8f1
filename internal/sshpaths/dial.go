package sshpaths

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/cardshare/cardshare/internal/neterr"
)

// ErrAgentNotRunning means nothing listens at the agent's address.
var ErrAgentNotRunning = errors.New("sshpaths: the ssh-agent is not running")

// DialAgent connects to the ssh-agent at addr: a Unix socket, or on
// Windows a named pipe (IsPipe). The connection is what
// golang.org/x/crypto/ssh/agent.NewClient takes.
func DialAgent(ctx context.Context, addr string) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	if IsPipe(addr) {
		c, err = dialPipe(ctx, `\\.\pipe\`+pipeName(addr))
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", addr)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || neterr.Refused(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrAgentNotRunning, addr, err)
		}
		return nil, fmt.Errorf("sshpaths: dial the ssh-agent at %s: %w", addr, err)
	}
	return c, nil
}

// fileConn is a net.Conn over a file that is a full-duplex stream: a
// named pipe client handle opened for overlapped I/O (Go 1.25 and later
// put such handles on the runtime's I/O completion port, so reads do not
// block a thread and deadlines work: os.NewFile's documentation).
type fileConn struct {
	f    *os.File
	addr pipeAddr
}

var _ net.Conn = fileConn{}

func newFileConn(f *os.File, name string) fileConn { return fileConn{f: f, addr: pipeAddr(name)} }

func (c fileConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	return n, c.wrap("read", err)
}

func (c fileConn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	return n, c.wrap("write", err)
}

func (c fileConn) Close() error { return c.wrap("close", c.f.Close()) }

func (c fileConn) LocalAddr() net.Addr                { return c.addr }
func (c fileConn) RemoteAddr() net.Addr               { return c.addr }
func (c fileConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c fileConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c fileConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// wrap turns os.File's *PathError into the *net.OpError that users of a
// net.Conn expect (its Timeout method is how they tell a deadline), with
// net.ErrClosed for a closed connection; io.EOF stays as it is.
func (c fileConn) wrap(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "pipe", Addr: c.addr, Err: err}
}

// pipeAddr is a named pipe's address.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
