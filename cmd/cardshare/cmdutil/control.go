package cmdutil

import (
	"errors"
	"log/slog"

	"github.com/cardshare/cardshare/internal/control"
)

// ServeControl serves status on the control socket at path until the
// returned stop is called. Where the system has no Unix domain sockets
// (control.ErrUnavailable: Wine, Windows before 10 version 1803) the
// command runs on without one, saying so once in its log, since `status`
// is the only thing lost; every other error is returned, so that a second
// `up` or `relay serve` still stops at ErrAlreadyRunning.
func ServeControl(path string, status func() control.StatusV1, log *slog.Logger) (stop func(), err error) {
	ln, err := control.Listen(path)
	if errors.Is(err, control.ErrUnavailable) {
		log.Warn("no control socket: `cardshare status` is unavailable while this runs; "+Hint(err), "err", err)
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	srv := control.Serve(ln, status, log)
	log.Info("control socket", "path", path)
	return func() { srv.Close() }, nil
}
