// Package servicecmd is `cardshare service install` and `uninstall`: flag
// parsing and printing over internal/service, which writes and removes the
// systemd user unit that runs `cardshare up`.
//
// It must not import forward or relay.
package servicecmd
