//go:build unix

package testenv

import "syscall"

// The process helpers of the harness: signals and running as another user
// are Unix's. Elsewhere (proc_other.go) they fail, so that the package
// still builds for `GOOS=windows go vet`.

const sigCont = syscall.SIGCONT

func kill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// asUser runs a command as uid:gid.
func asUser(uid, gid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}
