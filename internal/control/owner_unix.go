//go:build unix

package control

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a control socket directory of another user, who could
// replace the socket and answer for cardshare.
func checkOwner(dir string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return &described{fmt.Sprintf("control socket directory %s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid()), ErrNotOwner}
	}
	return nil
}
