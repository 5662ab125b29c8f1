//go:build !unix

package testenv

import (
	"errors"
	"syscall"
)

const sigCont = syscall.Signal(0x12)

func kill(int, syscall.Signal) error { return errors.ErrUnsupported }

func asUser(int, int) *syscall.SysProcAttr { return nil }
