// Package service writes the files and command lines that run
// `cardshare up` as a per-user background service on each host OS: a
// systemd user unit (Linux), a launchd LaunchAgent (macOS) and a Task
// Scheduler logon task (Windows).
//
// Two layers: UnitFile, UserUnitDir, Write and Systemctl are what
// `cardshare service install` uses on Linux today; PlanFor, Install and
// Uninstall are the same for every OS. A Plan is a pure function of a Spec
// and the user's directories, so that each OS's files are tested against
// golden files on any OS; Install writes Plan.Content to Plan.Path and
// runs the commands.
//
// Why a logon task and not a Windows service: cardshare must run as the
// user, with the user's SSH keys, ssh-agent (the OpenSSH agent hands out
// the keys of the user who connects to its pipe, decrypted with that
// user's DPAPI keys) and %USERPROFILE%\.ssh. A service runs as LocalSystem
// or as an account whose password Windows would have to store; a task with
// an InteractiveToken principal starts at the user's logon, in the user's
// session, needs no stored password and no administrator to install, and
// stops at logoff, like a systemd user unit or a LaunchAgent.
//
// Every path and argument of a Spec is checked for control characters
// before it is written into a file whose syntax is line-based (systemd)
// or XML (launchd, Task Scheduler): a newline in a path must not become a
// second directive.
//
// service must not import forward, relay, config or cmd.
package service
