package hostpcsc

import (
	"context"
	"errors"
	"fmt"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// The backends a user may choose (--backend, host.backend in the config
// file).
const (
	// Auto picks the best backend of this build and system: for now the
	// pcscd socket everywhere.
	Auto = "auto"
	// PCSCDSocket is the host pcscd's Unix socket (Socket).
	PCSCDSocket = "socket"
	// Native is the system's own PC/SC API (winscard.dll, PCSC.framework,
	// libpcsclite), for hosts without a pcscd socket to dial.
	Native = "native"
)

// Backends lists the names New accepts, for help texts and validation.
var Backends = []string{Auto, PCSCDSocket, Native}

// ErrNoNative is New's error for the native backend in a build that does
// not have it.
var ErrNoNative = errors.New("the native PC/SC backend is not in this build yet")

// ErrUnknownBackend is New's error for a name that is not in Backends.
var ErrUnknownBackend = errors.New("unknown PC/SC backend")

// New is the one place a Source is chosen: backend is one of Backends (""
// means Auto), socket the pcscd socket of the socket backend ("" means
// pcsc.DefaultSocket).
func New(backend, socket string) (Source, error) {
	switch backend {
	case "", Auto, PCSCDSocket:
		return Socket{Path: socket}, nil
	case Native:
		return nil, ErrNoNative
	}
	return nil, fmt.Errorf("%w %q: choose auto, socket or native", ErrUnknownBackend, backend)
}

// Open chooses the Source (New) and asks it which protocol it speaks: the
// start of every mode's host side. A source that does not answer fails
// with what it is ("host pcscd at PATH: ...").
func Open(ctx context.Context, backend, socket string) (Source, pcsc.Daemon, error) {
	src, err := New(backend, socket)
	if err != nil {
		return nil, pcsc.Daemon{}, err
	}
	d, err := src.Probe(ctx)
	if err != nil {
		return src, pcsc.Daemon{}, fmt.Errorf("host pcscd at %s: %w", socket, err)
	}
	return src, d, nil
}
