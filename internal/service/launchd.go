package service

import (
	"encoding/xml"
	"errors"
	"path"
	"strconv"
	"strings"
)

// LaunchAgent is the property list of a launchd LaunchAgent that runs s
// in the user's GUI session (launchd.plist(5)):
//
//   - ProgramArguments runs the program directly, no shell, so only XML
//     escaping is needed (and it needs absolute paths: launchd expands no
//     ~ and searches no PATH for them);
//   - RunAtLoad starts it when the agent is loaded, at login;
//   - KeepAlive {SuccessfulExit: false} restarts it when it exits with a
//     failure, as systemd's Restart=on-failure; ThrottleInterval 5 is
//     RestartSec=5s (launchd's default is 10 s);
//   - StandardOutPath and StandardErrorPath keep up's log, since a
//     LaunchAgent has no journal; launchd creates the file, not its
//     directory;
//   - ProcessType Interactive: launchd may throttle the CPU and I/O of
//     Background jobs, and an APDU waits for us;
//   - EnvironmentVariables PATH: a LaunchAgent's PATH is only
//     /usr/bin:/bin:/usr/sbin:/sbin, which lacks the VM managers' tools
//     (VBoxManage and prlctl link into /usr/local/bin) and Homebrew's
//     (/opt/homebrew/bin on Apple silicon, /usr/local/bin on Intel), where
//     a Terminal finds them.
//
// An agent in the gui/UID domain inherits the session's SSH_AUTH_SOCK,
// which launchd sets for the com.openssh.ssh-agent socket it owns, so the
// user's ssh-agent keys work as in Terminal.
func LaunchAgent(s Spec, logFile string) ([]byte, error) {
	if err := s.Validate("darwin"); err != nil {
		return nil, err
	}
	if !path.IsAbs(logFile) {
		return nil, errors.New("service: the LaunchAgent's log file path is not absolute")
	}
	if err := checkText("log file", logFile); err != nil {
		return nil, err
	}
	var b strings.Builder
	str := func(s string) {
		b.WriteString("<string>")
		xml.EscapeText(&b, []byte(s))
		b.WriteString("</string>")
	}
	key := func(k string) { b.WriteString("\t<key>" + k + "</key>\n\t") }
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by ` + "`cardshare service install`" + `; run it again to update this file. -->
<plist version="1.0">
<dict>
`)
	key("Label")
	str(LaunchdLabel)
	b.WriteString("\n")
	key("ProgramArguments")
	b.WriteString("<array>\n")
	for _, a := range append([]string{s.Binary}, s.Args...) {
		b.WriteString("\t\t")
		str(a)
		b.WriteString("\n")
	}
	b.WriteString("\t</array>\n")
	key("RunAtLoad")
	b.WriteString("<true/>\n")
	key("KeepAlive")
	b.WriteString("<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	key("ThrottleInterval")
	b.WriteString("<integer>5</integer>\n")
	key("ProcessType")
	str("Interactive")
	b.WriteString("\n")
	key("EnvironmentVariables")
	b.WriteString("<dict>\n\t\t<key>PATH</key>\n\t\t")
	str(launchdPATH)
	b.WriteString("\n\t</dict>\n")
	key("StandardOutPath")
	str(logFile)
	b.WriteString("\n")
	key("StandardErrorPath")
	str(logFile)
	b.WriteString("\n</dict>\n</plist>\n")
	return []byte(b.String()), nil
}

// launchdPATH is the agent's PATH: Homebrew's and /usr/local's before the
// system's, as in a Terminal with Homebrew set up.
const launchdPATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

func launchdPlan(s Spec, env Env) (Plan, error) {
	if !path.IsAbs(env.Home) {
		return Plan{}, errors.New("service: no home directory for the LaunchAgent")
	}
	logFile := LogFile("darwin", env)
	plist, err := LaunchAgent(s, logFile)
	if err != nil {
		return Plan{}, err
	}
	file := path.Join(env.Home, "Library", "LaunchAgents", LaunchdLabel+".plist")
	domain := "gui/" + strconv.Itoa(s.UID)
	target := domain + "/" + LaunchdLabel
	lc := func(args ...string) Command { return Command{Args: append([]string{"launchctl"}, args...)} }
	bootout := Command{Args: []string{"launchctl", "bootout", target}, MayFail: true} // fails when not loaded
	// bootstrap reads the plist; a loaded agent must be booted out first
	// for a changed file to count (kickstart -k would restart the old one).
	// enable clears a "disabled" override left by an earlier
	// `launchctl disable`, which would make bootstrap fail.
	load := []Command{bootout, lc("enable", target), lc("bootstrap", domain, file)}
	return Plan{
		Path:      file,
		Content:   plist,
		Dirs:      []string{path.Dir(logFile)},
		Install:   load,
		Restart:   load,
		Reload:    []Command{lc("kill", "SIGHUP", target)},
		Uninstall: []Command{bootout},
		Status:    lc("print", target),
		Logs:      "tail -f " + logFile,
	}, nil
}
