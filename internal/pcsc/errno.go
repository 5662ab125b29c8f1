package pcsc

import (
	"errors"
	"io/fs"

	"github.com/cardshare/cardshare/internal/neterr"
)

// isNoListener reports whether a dial failed because no daemon listens: the
// socket file is missing, or it is left over and refuses connections.
func isNoListener(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || neterr.Refused(err)
}
