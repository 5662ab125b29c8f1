package sshpaths

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/net/nettest"
	"golang.org/x/sys/windows"
)

// These run on Windows, and under Wine (scripts/wine-hostside.sh): a
// named pipe server made here stands in for the OpenSSH agent service,
// which Wine cannot run.

func testPipeName(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "cardshare-test-" + hex.EncodeToString(b)
}

// pipeServer creates one instance of an overlapped pipe server and
// returns a function that waits for a client and returns the connection.
func pipeServer(t *testing.T, name string, instances uint32) func() (net.Conn, error) {
	t.Helper()
	full := `\\.\pipe\` + name
	p, _ := windows.UTF16PtrFromString(full)
	h, err := windows.CreateNamedPipe(p, windows.PIPE_ACCESS_DUPLEX|windows.FILE_FLAG_OVERLAPPED,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT, instances, 65536, 65536, 0, nil)
	if err != nil {
		t.Fatalf("CreateNamedPipe: %v", err)
	}
	return func() (net.Conn, error) {
		ev, err := windows.CreateEvent(nil, 1, 0, nil)
		if err != nil {
			windows.CloseHandle(h)
			return nil, err
		}
		defer windows.CloseHandle(ev)
		ov := windows.Overlapped{HEvent: ev}
		err = windows.ConnectNamedPipe(h, &ov)
		switch {
		case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		case errors.Is(err, windows.ERROR_IO_PENDING):
			var n uint32
			if err := windows.GetOverlappedResult(h, &ov, &n, true); err != nil {
				windows.CloseHandle(h)
				return nil, err
			}
		default:
			windows.CloseHandle(h)
			return nil, err
		}
		return newFileConn(os.NewFile(uintptr(h), full), full), nil
	}
}

func TestPipeAgent(t *testing.T) {
	name := testPipeName(t)
	accept := pipeServer(t, name, 1)
	kr := agent.NewKeyring()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	kr.Add(agent.AddedKey{PrivateKey: key, Comment: "pipe key"})
	go func() {
		c, err := accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		agent.ServeAgent(kr, c)
		c.Close()
	}()

	// Wine's named pipe file system cannot be listed (FindFirstFile on
	// \\.\pipe\* finds nothing there); Windows' can.
	if pipes := listPipes(); len(pipes) == 0 {
		p, _ := windows.UTF16PtrFromString(`\\.\pipe\*`)
		var d windows.Win32finddata
		_, err := windows.FindFirstFile(p, &d)
		t.Logf("no pipes listed (Wine?): FindFirstFile: %v", err)
	} else if !slices.Contains(pipes, name) {
		t.Errorf("listPipes does not list %s among %d pipes", name, len(pipes))
	}
	h := Current()
	h.Getenv = func(string) string { return "" }
	h.User = "nobody"
	a, ok := FindAgent(h)
	t.Logf("FindAgent without the OpenSSH pipe: %+v %v", a, ok)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialAgent(ctx, "//./pipe/"+name) // the form Pageant writes
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, err := agent.NewClient(c).List()
	if err != nil || len(keys) != 1 || keys[0].Comment != "pipe key" {
		t.Fatalf("keys %v, %v", keys, err)
	}
	if c.RemoteAddr().Network() != "pipe" {
		t.Errorf("address %v", c.RemoteAddr())
	}

	// The only instance is taken: a second client waits, then gives up
	// with its context.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if c2, err := DialAgent(short, `\\.\pipe\`+name); err == nil {
		c2.Close()
		t.Error("second client connected to a one-instance pipe")
	} else {
		t.Logf("busy pipe: %v", err)
	}
}

func TestPipeNotRunning(t *testing.T) {
	_, err := DialAgent(context.Background(), `\\.\pipe\`+testPipeName(t))
	if !errors.Is(err, ErrAgentNotRunning) {
		t.Errorf("err = %v, want ErrAgentNotRunning", err)
	}
}

// fileConn over a real named pipe: both ends overlapped, on the poller.
func TestPipeConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		name := testPipeName(t)
		accept := pipeServer(t, name, 1)
		done := make(chan struct{})
		var srv net.Conn
		var aerr error
		go func() { srv, aerr = accept(); close(done) }()
		cli, err := dialPipe(context.Background(), `\\.\pipe\`+name)
		if err != nil {
			return nil, nil, nil, err
		}
		<-done
		if aerr != nil {
			cli.Close()
			return nil, nil, nil, aerr
		}
		return srv, cli, func() { srv.Close(); cli.Close() }, nil
	})
}
