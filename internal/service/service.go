package service

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UnitName is the name of the user unit.
const UnitName = "cardshare.service"

// UnitFile is the text of the user unit that runs binary with config. It
// refuses control characters in either path (ErrUnsafe): a newline would
// end ExecStart and start a directive of the path's choosing. Unit is the
// same for a Spec.
func UnitFile(binary, config string) (string, error) {
	if err := checkText("program path", binary); err != nil {
		return "", err
	}
	if err := checkText("config path", config); err != nil {
		return "", err
	}
	return unitText(systemdQuote(binary) + " up --config " + systemdQuote(config)), nil
}

// unitText is the user unit with the ExecStart command line execStart.
// ExecReload names kill by its absolute path: systemd before 239 requires
// one, and the unit must not depend on the manager's PATH.
func unitText(execStart string) string {
	return `# Written by ` + "`cardshare service install`" + `; run it again to update this file.
[Unit]
Description=` + description + `

[Service]
ExecStart=` + execStart + `
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=default.target
`
}

// systemdQuote quotes an argument for ExecStart: systemd splits on spaces,
// unquotes "..." with C escapes, and expands % specifiers and $ variables
// (systemd.service(5), "Command lines"). An empty argument is "".
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// UserUnitDir is where systemd looks for user units of this user.
func UserUnitDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "systemd", "user"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "systemd", "user"), nil
}

// Write puts unit at path unless it is there already. changed says
// whether the file was written, existed whether there was one before.
func Write(path, unit string) (changed, existed bool, err error) {
	old, err := os.ReadFile(path)
	existed = err == nil
	if bytes.Equal(old, []byte(unit)) && existed {
		return false, true, nil
	}
	if err := writeFileAtomic(path, []byte(unit)); err != nil {
		return false, existed, fmt.Errorf("write %s: %w", path, err)
	}
	return true, existed, nil
}

// Systemctl runs systemctl --user with args and returns "" on success,
// else why it failed, in systemctl's words.
func Systemctl(ctx context.Context, args ...string) string {
	path, err := exec.LookPath("systemctl")
	if err != nil {
		return "no systemctl program"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append([]string{"--user"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if msg == "" {
			msg = err.Error()
		}
		return msg
	}
	return ""
}

// writeFileAtomic replaces path with data (mode 0644) so that systemd never
// reads half a unit.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cardshare-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
