package hostpcsc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
)

// The backends a user may choose (--backend, host.backend in the config
// file).
const (
	// Auto is the pcscd socket when one answers, else the native backend
	// when the system's PC/SC library loads and answers (Pick).
	Auto = "auto"
	// PCSCDSocket is the host pcscd's Unix socket (Socket).
	PCSCDSocket = "socket"
	// Native is the system's own PC/SC API (winscard.dll, PCSC.framework,
	// libpcsclite), served by cardshare itself (internal/nativepcsc), for
	// hosts without a pcscd socket to dial.
	Native = "native"
)

// Backends lists the names New accepts, for help texts and validation.
var Backends = []string{Auto, PCSCDSocket, Native}

// ErrUnknownBackend is New's error for a name that is not in Backends.
var ErrUnknownBackend = errors.New("unknown PC/SC backend")

// autoTimeout bounds New's choice for Auto, which has no context.
const autoTimeout = 10 * time.Second

// New is the one place a Source is chosen: backend is one of Backends (""
// means Auto), socket the pcscd socket of the socket backend ("" means
// pcsc.DefaultSocket), log the native backend's logger (nil discards).
// Auto probes (Pick); socket and native do not. A native Source holds the
// system's PC/SC library and an event loop: Close it (Close) when done.
func New(backend, socket string, log *slog.Logger) (Source, error) {
	switch backend {
	case "", Auto:
		ctx, cancel := context.WithTimeout(context.Background(), autoTimeout)
		defer cancel()
		c, err := Pick(ctx, socket, log)
		return c.Source, err
	case PCSCDSocket:
		return Socket{Path: socket}, nil
	case Native:
		return newNative(log)
	}
	return nil, fmt.Errorf("%w %q: choose auto, socket or native", ErrUnknownBackend, backend)
}

// Open chooses the Source (New, or Pick for Auto) and asks it which
// protocol it speaks: the start of every mode's host side. A source that
// does not answer fails with what it is ("host pcscd at PATH: ...") and is
// closed. The caller closes the Source it gets (Close).
func Open(ctx context.Context, backend, socket string, log *slog.Logger) (Source, pcsc.Daemon, error) {
	if backend == "" || backend == Auto {
		c, err := Pick(ctx, socket, log)
		return c.Source, c.Daemon, err
	}
	src, err := New(backend, socket, log)
	if err != nil {
		return nil, pcsc.Daemon{}, err
	}
	d, err := Probe(ctx, src)
	if err != nil {
		Close(src)
		return nil, pcsc.Daemon{}, err
	}
	return src, d, nil
}

// Probe asks src which protocol it speaks, with an error that says which
// source did not answer.
func Probe(ctx context.Context, src Source) (pcsc.Daemon, error) {
	d, err := src.Probe(ctx)
	if err == nil {
		return d, nil
	}
	if s, ok := src.(Socket); ok {
		return d, fmt.Errorf("host pcscd at %s: %w", s.path(), err)
	}
	return d, fmt.Errorf("host PC/SC: %w", err)
}

// Choice is the source Auto chose, what it speaks, and why it was chosen.
type Choice struct {
	Source Source
	Daemon pcsc.Daemon
	// Why says why, for doctor and the log: "the pcscd socket PATH
	// answers", or why the native backend was taken instead.
	Why string
}

// AutoError is Pick's error when neither backend answers. Its message
// starts with the socket's error (what most hosts need fixed); both are in
// its chain, so that cmd/cardshare prints each with its own hint, as it
// prints errors.Join's.
type AutoError struct {
	Socket error // the pcscd socket's error
	Native error // why the native backend could not be used
}

func (e *AutoError) Error() string {
	return e.Socket.Error() + "; native backend: " + e.Native.Error()
}

// Unwrap gives both errors.
func (e *AutoError) Unwrap() []error { return []error{e.Socket, e.Native} }

// Pick is Auto: the pcscd socket if it answers, else the native backend
// if the system's PC/SC library loads and a context can be established,
// else an *AutoError. Windows has no pcscd (and Wine no AF_UNIX): there
// Auto is the native backend.
func Pick(ctx context.Context, socket string, log *slog.Logger) (Choice, error) {
	if runtime.GOOS == "windows" {
		src, err := newNative(log)
		if err != nil {
			return Choice{}, err
		}
		d, err := Probe(ctx, src)
		if err != nil {
			src.Close()
			return Choice{}, err
		}
		return Choice{Source: src, Daemon: d, Why: "Windows has no pcscd socket; " + src.Library().String() + " answers"}, nil
	}
	sock := Socket{Path: socket}
	d, sockErr := Probe(ctx, sock)
	if sockErr == nil {
		return Choice{Source: sock, Daemon: d, Why: "the pcscd socket " + sock.path() + " answers"}, nil
	}
	nat, err := newNative(log)
	if err != nil {
		return Choice{}, &AutoError{Socket: sockErr, Native: err}
	}
	d, err = Probe(ctx, nat)
	if err != nil {
		nat.Close()
		return Choice{}, &AutoError{Socket: sockErr, Native: err}
	}
	why := fmt.Sprintf("the pcscd socket %s does not answer (%v), but %s does", sock.path(), errors.Unwrap(sockErr), nat.Library())
	return Choice{Source: nat, Daemon: d, Why: why}, nil
}

// Close releases what src holds, if anything (the native backend's
// library contexts and event loop); a Socket holds nothing.
func Close(src Source) error {
	if c, ok := src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// BackendOf names the backend of a Source that New made: PCSCDSocket or
// Native, "" for anything else.
func BackendOf(src Source) string {
	switch src.(type) {
	case Socket:
		return PCSCDSocket
	case *nativepcsc.Source:
		return Native
	}
	return ""
}
