//go:build !linux

package vcard

import "syscall"

// setQuickAck does nothing: TCP_QUICKACK is Linux-only, and the vpcd this
// package is tested against runs on Linux.
func setQuickAck(syscall.RawConn) error { return nil }
