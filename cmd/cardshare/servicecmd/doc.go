// Package servicecmd is `cardshare service install` and `uninstall`: flag
// parsing and printing over internal/service, whose plans are the same
// for systemd (Linux), launchd (macOS) and Task Scheduler (Windows). The
// config file is checked by the function cmd/cardshare hands to New, so
// that `service install` and `config check` say the same.
//
// It must not import forward or relay.
package servicecmd
