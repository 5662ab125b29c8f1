package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cardshare/cardshare/internal/neterr"
	"github.com/cardshare/cardshare/internal/unixsock"
)

// The control socket lets `cardshare status` (and scripts, with
// `curl --unix-socket SOCK http://cardshare/v1/status`) ask a running
// `cardshare up` how its guests are doing. It serves HTTP over a Unix socket
// in a directory only the user can enter; the socket itself is mode 0600.
//
// Endpoints:
//
//	GET /v1/status   the StatusV1 document below, as JSON
const statusPath = "/v1/status"

// StatusVersion is the version of the status document. It changes only
// when a field is removed or changes meaning; new fields may be added
// within a version, so readers must ignore fields they do not know.
const StatusVersion = 1

// StatusV1 is the document that `cardshare status --json` prints and the
// control socket serves. Every field is always present; times are RFC 3339
// in UTC with fractional seconds, and null when they do not apply.
//
//	{
//	  "version": 1,                   // StatusVersion
//	  "mode": "up",                   // "up" (SSH forwards) or "relay" (`cardshare relay serve`)
//	  "pid": 4242,                    // process of `cardshare up` or `relay serve`
//	  "config": "/home/me/.config/cardshare/config.yaml",  // relay: the state directory
//	  "listen": "",                   // relay: where it listens for guests ("" when it only dials)
//	  "started": "2025-05-01T09:00:00.123Z",
//	  "loaded": "2025-05-01T09:30:00.456Z",  // last successful (re)load
//	  "reload_error": "",             // why the last reload was refused or partly applied; "" if it was not
//	  "host": {
//	    "backend": "socket",          // "socket" (the pcscd socket) or "native" (the system's PC/SC API)
//	    "source": "pcscd socket /run/pcscd/pcscd.comm",  // or "native PC/SC (winscard.dll)"...
//	    "pcscd_socket": "/run/pcscd/pcscd.comm",  // "" with the native backend
//	    "protocol": "4.4",            // host pcscd's protocol version (native: "4.6", it serves 4.4–4.6)
//	    "releases": "pcsc-lite 1.8.24–2.2.3"
//	  },
//	  "guests": [{                    // in config file order; [] when none
//	    "name": "devvm",
//	    "destination": "dev@127.0.0.1:2222",  // as configured ("" when vm is used)
//	    "vm": "",                     // as configured ("" when destination is used)
//	    "address": "127.0.0.1:2222",  // host:port connected to; "" if not resolved
//	                                  // relay: the guest's address (where it connected from, or where the host dials it)
//	    "user": "dev",                // SSH login user; "" if not resolved
//	    "state": "up",                // connecting | up | backing-off | failed | stopped
//	                                  // relay also: disconnected (waiting for the guest) | revoked
//	    "since": "2025-05-01T09:00:01.789Z",  // when state began; for "up", connected since
//	    "retry_at": null,             // next attempt, only in "backing-off"
//	    "socket": "/run/user/1000/cardshare/pcscd.comm",  // guest socket path; "" before the first connection
//	    "guest_protocol": "4.4",      // guest libpcsclite's protocol; "" if unknown
//	    "guest_release": "1.9.9",     // guest pcsc-lite release; "" if unknown
//	    "host_protocol": "4.4",       // protocol of the pcscd this guest is relayed to
//	    "open_connections": 1,        // guest client connections relayed now
//	    "connections": 12,            // accepted since the guest's forward was (re)started
//	    "failed_connections": 0,      // closed before relaying: bad opening, pcscd unreachable
//	    "bytes_up": 2048,             // guest to host, since (re)start
//	    "bytes_down": 8192,           // host to guest, since (re)start
//	    "last_error": "",             // why the forward last went down or failed; "" if never
//	    "readers": [], "control": "allow", "audit": false,  // the reader policy
//	    "kind": "ssh",                // ssh | relay | qemu-ccid (QEMU's emulated USB CCID reader)
//	    "chardevs": []                // qemu-ccid: one ChardevStatus per emulated reader
//	  }]
//	}
//
// A guest that is configured but could not be resolved (its ssh_config
// entry is broken, say) is listed with state "failed" and the reason in
// last_error. Counters restart when a reload restarts the guest.
//
// `cardshare relay serve` serves the same document with mode "relay" on its
// own control socket (relay.sock beside control.sock): one entry per paired
// guest, counters since serve started; "destination", "vm", "user",
// "socket", "guest_protocol" and "guest_release" are "" (the guest's agent
// checks its own libpcsclite), "loaded" is when serve started and
// "reload_error" is "". "mode" and "listen" were added within version 1:
// a document without "mode" comes from `cardshare up`. So were the host's
// "backend" and "source" (issue 14): a document without them comes from
// the socket backend.
//
// qemu-ccid guests (QEMU's emulated USB CCID reader: a `ccid:` guest of
// `up`, or `cardshare qemu attach`, whose document has mode "qemu-ccid" and
// the host PC/SC library in "pcscd_socket") have kind "qemu-ccid", state
// "connecting" (waiting for QEMU on a chardev), "up" (QEMU on every
// chardev) or "failed", "readers" holding the reader glob, "control"
// "deny", and per emulated reader a "chardevs" entry (ChardevStatus);
// "destination", "address", "user", "socket" and the connection counters
// are empty. "kind" and "chardevs" were added within version 1.
type StatusV1 struct {
	Version     int           `json:"version"`
	Mode        string        `json:"mode"`
	PID         int           `json:"pid"`
	Config      string        `json:"config"`
	Listen      string        `json:"listen"`
	Started     time.Time     `json:"started"`
	Loaded      time.Time     `json:"loaded"`
	ReloadError string        `json:"reload_error"`
	Host        HostStatus    `json:"host"`
	Guests      []GuestStatus `json:"guests"`
}

// HostStatus is the host's PC/SC as `cardshare up` or `relay serve`
// chose and probed it.
type HostStatus struct {
	Backend     string `json:"backend"`
	Source      string `json:"source"`
	PCSCDSocket string `json:"pcscd_socket"`
	Protocol    string `json:"protocol"`
	Releases    string `json:"releases"`
}

// GuestStatus is one guest of StatusV1.
type GuestStatus struct {
	Name              string     `json:"name"`
	Destination       string     `json:"destination"`
	VM                string     `json:"vm"`
	Address           string     `json:"address"`
	User              string     `json:"user"`
	State             string     `json:"state"`
	Since             time.Time  `json:"since"`
	RetryAt           *time.Time `json:"retry_at"`
	Socket            string     `json:"socket"`
	GuestProtocol     string     `json:"guest_protocol"`
	GuestRelease      string     `json:"guest_release"`
	HostProtocol      string     `json:"host_protocol"`
	OpenConnections   int64      `json:"open_connections"`
	Connections       uint64     `json:"connections"`
	FailedConnections uint64     `json:"failed_connections"`
	BytesUp           uint64     `json:"bytes_up"`
	BytesDown         uint64     `json:"bytes_down"`
	LastError         string     `json:"last_error"`
	// The guest's reader policy: the reader name patterns it is limited to
	// (empty: every reader), "allow" or "deny" for SCardControl, and
	// whether its calls are logged.
	Readers []string `json:"readers"`
	Control string   `json:"control"`
	Audit   bool     `json:"audit"`
	// Kind is how the guest gets the card: "ssh" (a forwarded pcscd
	// socket), "relay" or "qemu-ccid" (QEMU's emulated USB CCID reader);
	// Chardevs are a qemu-ccid guest's emulated readers ([] otherwise).
	// Both added within version 1.
	Kind     string          `json:"kind"`
	Chardevs []ChardevStatus `json:"chardevs"`
}

// SetPolicy fills g's policy fields; readers may be nil.
func (g *GuestStatus) SetPolicy(readers []string, denyControl, audit bool) {
	g.Readers, g.Control, g.Audit = append([]string{}, readers...), "allow", audit
	if denyControl {
		g.Control = "deny"
	}
}

// Modes of StatusV1: `cardshare up` and `cardshare relay serve`.
const (
	ModeUp    = "up"
	ModeRelay = "relay"
	// ModeQEMUCCID is `cardshare qemu attach` (added within version 1).
	ModeQEMUCCID = "qemu-ccid"
)

// Errors that callers branch on (to print a hint, say).
var (
	// ErrNotRunning means nothing serves the control socket.
	ErrNotRunning = errors.New("cardshare is not running")
	// ErrAlreadyRunning means another process serves the control socket.
	ErrAlreadyRunning = errors.New("another cardshare is running")
	// ErrPathTooLong means the socket path does not fit in sun_path.
	ErrPathTooLong = errors.New("control socket path is too long")
	// ErrNotOwner means the socket's directory belongs to another user,
	// who could replace the socket and answer for cardshare.
	ErrNotOwner = errors.New("control socket directory belongs to another user")
	// ErrVersion means the running process serves another StatusVersion.
	ErrVersion = errors.New("status version mismatch")
	// ErrUnavailable means this system has no Unix domain sockets, so
	// there can be no control socket: Wine (whose Winsock has no AF_UNIX,
	// WSAEAFNOSUPPORT) and Windows before 10 version 1803. `up` and `relay
	// serve` run without one there, and `status` cannot ask them.
	ErrUnavailable = errors.New("status is unavailable: this system has no Unix domain sockets (AF_UNIX), which the control socket needs")
)

// DefaultSocket is $XDG_RUNTIME_DIR/cardshare/control.sock, else
// control.sock in a cardshare directory of the user's cache directory.
func DefaultSocket() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "cardshare", "control.sock"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the control socket: %w", err)
	}
	return filepath.Join(d, "cardshare", "control.sock"), nil
}

// DefaultRelaySocket is the control socket of `relay serve`, beside
// that of `up`, so that both can run.
func DefaultRelaySocket() (string, error) {
	p, err := DefaultSocket()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(p), "relay.sock"), nil
}

// prepareDir creates dir mode 0700 if needed and checks that it is
// a real directory of this user that no one else can enter, tightening its
// mode when it is ours (unixsock.MkdirPrivate): whoever can reach the
// socket can see the guests.
func prepareDir(dir string) error {
	err := unixsock.MkdirPrivate(dir)
	if errors.Is(err, unixsock.ErrUnsafePermissions) {
		return &described{"control socket directory: " + err.Error(), errors.Join(ErrNotOwner, err)}
	}
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	return nil
}

// Listen listens on the control socket at path, after removing a
// stale socket that nothing serves. A live one means another `cardshare up`.
func Listen(path string) (net.Listener, error) {
	if len(path) > unixsock.MaxPath {
		return nil, &described{fmt.Sprintf("control socket path %s is %d bytes long; Unix sockets allow %d", path, len(path), unixsock.MaxPath), ErrPathTooLong}
	}
	if err := prepareDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w (its control socket is %s)", ErrAlreadyRunning, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		if neterr.NoUnixSockets(err) {
			return nil, fmt.Errorf("%w (%v)", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("make control socket owner-only: %w", err)
	}
	return ln, nil
}

// Serve answers status requests on ln until Close. The listener
// removes the socket file when it closes.
func Serve(ln net.Listener, status func() StatusV1, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+statusPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go srv.Serve(ln)
	return srv
}

// Query asks the `cardshare up` behind the control socket at path.
func Query(ctx context.Context, path string) (*StatusV1, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://cardshare"+statusPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if oe := (*net.OpError)(nil); neterr.NoUnixSockets(err) && errors.As(err, &oe) {
			return nil, fmt.Errorf("%w (%v)", ErrUnavailable, oe)
		}
		if _, serr := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || neterr.Refused(err) || errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: nothing serves %s", ErrNotRunning, path)
		}
		return nil, fmt.Errorf("ask cardshare at %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask cardshare at %s: %s", path, resp.Status)
	}
	var s StatusV1
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("read status from %s: %w", path, err)
	}
	if s.Version != StatusVersion {
		return nil, &described{fmt.Sprintf("the running cardshare speaks status version %d; this cardshare reads %d", s.Version, StatusVersion), ErrVersion}
	}
	if s.Mode == "" {
		s.Mode = ModeUp
	}
	return &s, nil
}

// described is a sentinel error with a message of its own: errors.Is
// matches err, and the text says what happened without repeating it.
type described struct {
	msg string
	err error
}

func (d *described) Error() string { return d.msg }
func (d *described) Unwrap() error { return d.err }
