package pcsc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrNoDaemon means nothing listens on the pcscd socket.
var ErrNoDaemon = errors.New("pcsc: pcscd is not running")

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
		if errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			return Daemon{}, fmt.Errorf("%w (%s)", ErrRefused, path)
		}
		return Daemon{}, fmt.Errorf("pcsc: probe %s: %w", path, err)
	}
	d2 := Daemon{Version: r.Version, Lenient: r.Accepted() && r.Version != V44}
	if !r.Accepted() && r.RV != ReturnServiceStopped {
		return d2, fmt.Errorf("pcsc: probe %s: CMD_VERSION answered with rv %#x", path, r.RV)
	}
	return d2, nil
}
