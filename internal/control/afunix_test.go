package control

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
)

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
