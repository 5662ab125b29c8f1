package control

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Where the system has no AF_UNIX (noUnixSockets: EAFNOSUPPORT, or
// Winsock's WSAEAFNOSUPPORT on Windows), Listen and Query say
// ErrUnavailable and nothing else; any other socket error is not taken
// for it.
func TestNoUnixSockets(t *testing.T) {
	opErr := func(errno error) error {
		return &net.OpError{Op: "listen", Net: "unix", Err: os.NewSyscallError("socket", errno)}
	}
	if !noUnixSockets(opErr(afNoSupport)) {
		t.Errorf("%v is not taken for a missing AF_UNIX", opErr(afNoSupport))
	}
	for _, e := range []error{syscall.ENOENT, connRefused, syscall.EACCES} {
		if noUnixSockets(opErr(e)) {
			t.Errorf("%v is taken for a missing AF_UNIX", opErr(e))
		}
	}
	if !refused(opErr(connRefused)) || refused(opErr(afNoSupport)) {
		t.Errorf("refused(%v) or refused(%v) is wrong", opErr(connRefused), opErr(afNoSupport))
	}
}

// TestControlSocketHere listens and queries on this system's own AF_UNIX:
// a status round trip where there is one (Linux, real Windows 10 1803 and
// later), ErrUnavailable from both Listen and Query where there is none
// (Wine, whose Winsock has no AF_UNIX: scripts/wine-host.sh runs this
// test's windows/amd64 build under Wine 10).
func TestControlSocketHere(t *testing.T) {
	path := filepath.Join(shortDir(t), "control.sock")
	ln, err := Listen(path)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Listen: %v", err)
		}
		if _, qerr := Query(context.Background(), path); !errors.Is(qerr, ErrUnavailable) {
			t.Fatalf("Listen: %v; Query: %v, want ErrUnavailable", err, qerr)
		}
		t.Logf("no AF_UNIX here: %v", err)
		return
	}
	srv := Serve(ln, func() StatusV1 { return StatusV1{Version: StatusVersion, PID: 9} }, slog.New(slog.DiscardHandler))
	defer srv.Close()
	if s, err := Query(context.Background(), path); err != nil || s.PID != 9 {
		t.Fatalf("Query = %+v, %v", s, err)
	}
}
