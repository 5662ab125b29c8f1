package service

import (
	"errors"
	"path"
	"strings"
)

// Unit is the text of the systemd user unit that runs s: the unit
// `cardshare service install` has always written (restart on failure after
// 5 s; `systemctl --user reload` sends SIGHUP, which makes up reread its
// config), with the Spec's arguments and control characters rejected.
func Unit(s Spec) (string, error) {
	if err := s.Validate("linux"); err != nil {
		return "", err
	}
	cmd := []string{systemdQuote(s.Binary)}
	for _, a := range s.Args {
		cmd = append(cmd, systemdQuote(a))
	}
	return unitText(strings.Join(cmd, " ")), nil
}

func systemdPlan(s Spec, env Env) (Plan, error) {
	unit, err := Unit(s)
	if err != nil {
		return Plan{}, err
	}
	dir := env.XDGConfigHome
	if !path.IsAbs(dir) {
		if env.Home == "" {
			return Plan{}, errors.New("service: no home directory for the systemd user unit")
		}
		dir = path.Join(env.Home, ".config")
	}
	sc := func(args ...string) Command { return Command{Args: append([]string{"systemctl", "--user"}, args...)} }
	return Plan{
		Path:    path.Join(dir, "systemd", "user", SystemdUnit),
		Content: []byte(unit),
		Install: []Command{sc("daemon-reload"), sc("enable", "--now", SystemdUnit)},
		// As `service install` has always done for a changed unit: reload
		// the unit files, make sure it is enabled and running, and restart
		// it if it was running already.
		Restart:     []Command{sc("daemon-reload"), sc("enable", "--now", SystemdUnit), sc("try-restart", SystemdUnit)},
		Reload:      []Command{sc("reload", SystemdUnit)},
		Uninstall:   []Command{{Args: []string{"systemctl", "--user", "disable", "--now", SystemdUnit}, MayFail: true}},
		AfterRemove: []Command{sc("daemon-reload")},
		Status:      sc("status", SystemdUnit),
		Logs:        "journalctl --user -u cardshare -f",
	}, nil
}
