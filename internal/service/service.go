package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UnitName is the name of the user unit.
const UnitName = "cardshare.service"

// UnitFile is the text of the user unit that runs binary with config. It
// refuses a path that a unit file cannot carry: a newline or a NUL would
// end the ExecStart line and start a directive of its own.
func UnitFile(binary, config string) (string, error) {
	b, err := systemdQuote(binary)
	if err != nil {
		return "", err
	}
	c, err := systemdQuote(config)
	if err != nil {
		return "", err
	}
	// ExecReload names kill by its absolute path: systemd before 239
	// requires one, and a unit must not depend on the manager's PATH.
	return `# Written by ` + "`cardshare service install`" + `; run it again to update this file.
[Unit]
Description=cardshare: the host's smart card readers in guest VMs

[Service]
ExecStart=` + b + ` up --config ` + c + `
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=default.target
`, nil
}

// ErrUnitPath means a path cannot be written into a unit file.
var ErrUnitPath = errors.New("service: a path in a systemd unit cannot hold a newline, carriage return or NUL")

// systemdQuote quotes an argument for ExecStart: systemd splits on spaces,
// unquotes "..." with C escapes, and expands % specifiers and $ variables.
// A line break or NUL cannot be quoted: it ends the line.
func systemdQuote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", fmt.Errorf("%w: %q", ErrUnitPath, s)
	}
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s, nil
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`, nil
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
