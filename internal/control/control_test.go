package control

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs") // sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// The control socket's directory ends up 0700 whether it is new or was
// left open, and the socket 0600.
func TestControlSocketPermissions(t *testing.T) {
	t.Parallel()
	for _, pre := range []fs.FileMode{0, 0o755} {
		dir := filepath.Join(shortDir(t), "run", "cardshare")
		if pre != 0 {
			if err := os.MkdirAll(dir, pre); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, pre)
		}
		ln, err := Listen(filepath.Join(dir, "control.sock"))
		if err != nil {
			t.Fatal(err)
		}
		checkMode(t, dir, fs.ModeDir|0o700)
		checkMode(t, filepath.Join(dir, "control.sock"), 0o600)
		ln.Close()
		if _, err := os.Lstat(filepath.Join(dir, "control.sock")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket left behind after Close: %v", err)
		}
	}
}

func TestControlSocketRefusesNonDirectory(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	if _, err := Listen(filepath.Join(dir, "file", "control.sock")); err == nil {
		t.Error("listened under a regular file")
	}
	os.Symlink("/tmp", filepath.Join(dir, "link"))
	if _, err := Listen(filepath.Join(dir, "link", "control.sock")); err == nil {
		t.Error("listened in a directory reached through a symlink")
	}
	os.WriteFile(filepath.Join(dir, "notsock"), nil, 0o600)
	if _, err := Listen(filepath.Join(dir, "notsock")); err == nil {
		t.Error("replaced a regular file with the socket")
	}
}

// A socket left by a killed `up` is replaced; a live one means another
// `up` runs, which is ErrAlreadyRunning.
func TestControlSocketStaleAndLive(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "control.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	_, err = Listen(path)
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second listen: %v, want ErrAlreadyRunning", err)
	}
}

func TestQueryStatus(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "control.sock")
	if _, err := Query(context.Background(), path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("no socket: %v, want ErrNotRunning", err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, func() StatusV1 {
		return StatusV1{Version: StatusVersion, PID: 7, Guests: []GuestStatus{{Name: "a", State: "up"}}}
	}, slog.New(slog.DiscardHandler))
	s, err := Query(context.Background(), path)
	if err != nil || s.PID != 7 || len(s.Guests) != 1 || s.Guests[0].Name != "a" {
		t.Errorf("Query = %+v, %v", s, err)
	}
	srv.Close()

	// A newer document version is refused rather than misread.
	ln, err = Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"version": 2})
	}))
	defer ln.Close()
	if _, err := Query(context.Background(), path); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v, want ErrVersion", err)
	}
}

// Every field of the JSON document is present, even when empty: scripts
// may index them without checking.
func TestStatusJSONFields(t *testing.T) {
	b, err := json.Marshal(StatusV1{Guests: []GuestStatus{{}}})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Guests []map[string]any `json:"guests"`
		Host   map[string]any   `json:"host"`
	}
	json.Unmarshal(b, &m)
	var top map[string]any
	json.Unmarshal(b, &top)
	for _, k := range []string{"version", "mode", "pid", "config", "listen", "started", "loaded", "reload_error", "host", "guests"} {
		if _, ok := top[k]; !ok {
			t.Errorf("top level lacks %q", k)
		}
	}
	for _, k := range []string{"backend", "source", "pcscd_socket", "protocol", "releases"} {
		if _, ok := m.Host[k]; !ok {
			t.Errorf("host lacks %q", k)
		}
	}
	for _, k := range []string{"name", "destination", "vm", "address", "user", "state", "since", "retry_at", "socket",
		"guest_protocol", "guest_release", "host_protocol", "open_connections", "connections", "failed_connections",
		"bytes_up", "bytes_down", "last_error", "readers", "control", "audit", "kind", "chardevs"} {
		if _, ok := m.Guests[0][k]; !ok {
			t.Errorf("guest lacks %q", k)
		}
	}
	if len(top) != 10 || len(m.Host) != 5 || len(m.Guests[0]) != 23 {
		t.Errorf("fields added without updating the documented schema and this test: %s", b)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() &^ fs.ModeSocket; got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
