//go:build unix

package sshpaths

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/net/nettest"
)

// DialAgent against a real agent (x/crypto's keyring served on a socket).
func TestDialAgent(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	kr := agent.NewKeyring()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	kr.Add(agent.AddedKey{PrivateKey: key, Comment: "test key"})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialAgent(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := agent.NewClient(c).List()
	c.Close()
	if err != nil || len(keys) != 1 || keys[0].Comment != "test key" {
		t.Errorf("keys %v, %v", keys, err)
	}

	// Nothing there, and a socket file nobody listens on.
	if _, err := DialAgent(ctx, filepath.Join(dir, "none")); !errors.Is(err, ErrAgentNotRunning) {
		t.Errorf("no socket: %v", err)
	}
	stale, _ := net.Listen("unix", filepath.Join(dir, "stale"))
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := DialAgent(ctx, filepath.Join(dir, "stale")); !errors.Is(err, ErrAgentNotRunning) {
		t.Errorf("stale socket: %v", err)
	}
	// A pipe address outside Windows fails, but not as "not running".
	if _, err := DialAgent(ctx, OpenSSHAgentPipe); err == nil || errors.Is(err, ErrAgentNotRunning) {
		t.Errorf("pipe on %s: %v", "unix", err)
	}
}

// fileConn is checked as a net.Conn over the one kind of full-duplex file
// this OS has, a socket pair opened with os.NewFile (non-blocking, so on
// the poller like an overlapped pipe handle on Windows).
func TestFileConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, fd := range fds {
			syscall.SetNonblock(fd, true)
		}
		c1 = newFileConn(os.NewFile(uintptr(fds[0]), "a"), `\\.\pipe\a`)
		c2 = newFileConn(os.NewFile(uintptr(fds[1]), "b"), `\\.\pipe\b`)
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
