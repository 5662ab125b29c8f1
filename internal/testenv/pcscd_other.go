//go:build !linux

package testenv

import (
	"errors"
	"net"
	"syscall"
)

func checkPCSCDHost() error {
	return errors.New("StartPCSCD needs Linux: it runs Debian's pcscd in Linux namespaces")
}

func pcscdSysProcAttr() *syscall.SysProcAttr { return nil }

func killWithParent() *syscall.SysProcAttr { return nil }

func dialInNetns(pid, port int) (*net.TCPConn, error) { return nil, errors.ErrUnsupported }
