package cmdutil

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cardshare/cardshare/internal/control"
)

// ServeControl serves status until stopped, and only a missing AF_UNIX
// (control.ErrUnavailable, under Wine: scripts/wine-host.sh) is let
// pass: a second process on the same socket still stops at
// ErrAlreadyRunning.
func TestServeControl(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs") // sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "ctl", "control.sock")
	log := slog.New(slog.DiscardHandler)
	stop, err := ServeControl(path, func() control.StatusV1 { return control.StatusV1{Version: control.StatusVersion, PID: 5} }, log)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := control.Query(context.Background(), path); err != nil || s.PID != 5 {
		t.Errorf("Query = %+v, %v", s, err)
	}
	if _, err := ServeControl(path, nil, log); !errors.Is(err, control.ErrAlreadyRunning) {
		t.Errorf("second ServeControl: %v, want ErrAlreadyRunning", err)
	}
	stop()
	if _, err := control.Query(context.Background(), path); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("Query after stop: %v, want ErrNotRunning", err)
	}
	if h := Hint(control.ErrUnavailable); h == "" {
		t.Error("no hint for ErrUnavailable")
	}
}
