//go:build unix

package main

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
		return withHint(fmt.Errorf("control socket directory %s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid()),
			"remove it, or choose another path with --control-socket")
	}
	return nil
}
