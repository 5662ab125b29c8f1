package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cardshare/cardshare/internal/neterr"
)

// ErrNoDaemon means nothing listens on the pcscd socket.
var ErrNoDaemon = errors.New("pcsc: pcscd is not running")

// ErrNoSocketDir means the pcscd socket's directory does not exist: the
// path is probably wrong (pcscd creates the directory when it starts). It
// also matches ErrNoDaemon.
var ErrNoSocketDir = errors.New("pcsc: no such directory for the pcscd socket")

type noSocketDirError struct{ path, dir string }

func (e *noSocketDirError) Error() string {
	return fmt.Sprintf("pcsc: no pcscd socket at %s: the directory %s does not exist", e.path, e.dir)
}

func (e *noSocketDirError) Is(target error) bool {
	return target == ErrNoSocketDir || target == ErrNoDaemon
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ErrRefused means pcscd closed the connection without answering, which is
// what it does when polkit denies access (org.debian.pcsc-lite.access_pcsc).
var ErrRefused = errors.New("pcsc: pcscd closed the connection without answering")

// Probe connects to the pcscd socket at path and asks which protocol version
// it speaks. It proposes 4.4, the oldest version current daemons know, which
// tells every release apart with one request: 1.8.24–2.2.3 accept it and say
// 4.4; 2.3.0–2.4.0 reject it and say 4.5; 2.4.1 accepts it and says 4.5;
// 2.5.x accepts it and says 4.6. Only a strict daemon logs a rejection.
func Probe(ctx context.Context, path string) (Daemon, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if dir := filepath.Dir(path); errors.Is(err, fs.ErrNotExist) && !isDir(dir) {
			return Daemon{}, &noSocketDirError{path: path, dir: dir}
		}
		if isNoListener(err) {
			return Daemon{}, fmt.Errorf("%w: %s: %w", ErrNoDaemon, path, err)
		}
		return Daemon{}, fmt.Errorf("pcsc: connect to pcscd: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	if _, err := c.Write(AppendVersionRequest(nil, V44)); err != nil {
		return Daemon{}, fmt.Errorf("pcsc: probe %s: %w", path, err)
	}
	var buf [versionSize]byte
	r, err := ReadVersionReply(c, &buf)
	if err != nil {
		// A reset is how a client sees pcscd closing a socket with
		// unread data on it.
		if errors.Is(err, io.ErrUnexpectedEOF) || neterr.Reset(err) {
			return Daemon{}, fmt.Errorf("%w (%s)", ErrRefused, path)
		}
		return Daemon{}, fmt.Errorf("pcsc: probe %s: %w", path, err)
	}
	d2 := Daemon{Version: r.Version, Lenient: r.Accepted() && r.Version != V44}
	if !r.Accepted() && r.RV != ReturnServiceStopped {
		return d2, fmt.Errorf("pcsc: probe %s: CMD_VERSION answered with rv %#x", path, r.RV)
	}
	// The array size is a convenience: a daemon that does not answer as
	// expected leaves it unknown, and the probe still succeeds.
	d2.Readers, _ = probeSlots(c, r)
	return d2, nil
}

// slotsMarker is pcscd's reply to SCARD_ESTABLISH_CONTEXT with scope 7:
// the scope echoed, no context, SCARD_E_INVALID_VALUE (SCardEstablishContext,
// src/winscard.c:190-213 in pcsc-lite 2.5.1).
var slotsMarker = []byte{7, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0x10, 0x80}

// probeSlots measures the records of the daemon's CMD_GET_READERS_STATE
// reply on a connection whose CMD_VERSION exchange got r (the size is the compile-time
// PCSCLITE_MAX_READERS_CONTEXTS, src/readerfactory.c:68 in 2.2.3): it
// asks for the reader states and then for a context with an invalid
// scope, whose reply is known, and counts the bytes before that reply.
// Neither request changes anything in the daemon.
func probeSlots(c net.Conn, r VersionReply) (int, error) {
	if !r.Accepted() {
		// A strict daemon: propose its own version on the same socket,
		// as a client of pcsc-lite 2.4.1 falls back.
		if _, err := c.Write(AppendVersionRequest(nil, r.Version)); err != nil {
			return 0, err
		}
		var buf [versionSize]byte
		r2, err := ReadVersionReply(c, &buf)
		if err != nil {
			return 0, err
		}
		if !r2.Accepted() {
			return 0, errors.New("pcsc: daemon rejects its own version")
		}
	}
	req := le.AppendUint32(nil, 0)
	req = le.AppendUint32(req, CmdGetReadersState)
	req = le.AppendUint32(req, EstablishSize)
	req = le.AppendUint32(req, CmdEstablishContext)
	req = le.AppendUint32(req, 7) // no such scope
	req = le.AppendUint32(req, 0)
	req = le.AppendUint32(req, 0)
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	max := MaxSlots*ReaderStateSize + len(slotsMarker)
	buf := make([]byte, 0, DefaultSlots*ReaderStateSize+len(slotsMarker))
	for len(buf) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), max)])
		buf = buf[:len(buf)+n]
		if len(buf) >= headerSize && bytes.Equal(buf[:headerSize], req[:headerSize]) {
			// Our own request back: a test double that echoes, not
			// pcscd. A record cannot start so: reader names are text.
			return 0, errors.New("pcsc: the daemon echoes requests")
		}
		if k := len(buf) - len(slotsMarker); k > 0 && k%ReaderStateSize == 0 && bytes.Equal(buf[k:], slotsMarker) {
			return k / ReaderStateSize, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, errors.New("pcsc: reader array larger than supported")
}
