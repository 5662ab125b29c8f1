//go:build !windows

package service

// DetachConsole does nothing outside Windows, where services have no
// console window.
func DetachConsole() error { return nil }
