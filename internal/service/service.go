package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UnitName is the name of the user unit.
const UnitName = "cardshare.service"

// UnitFile is the text of the user unit that runs binary with config.
func UnitFile(binary, config string) string {
	return unitMark + `; run it again to update this file.
[Unit]
Description=cardshare: the host's smart card readers in guest VMs

[Service]
ExecStart=` + systemdQuote(binary) + ` up --config ` + systemdQuote(config) + `
ExecReload=kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=default.target
`
}

// systemdQuote quotes an argument for ExecStart: systemd splits on spaces,
// unquotes "..." with C escapes, and expands % specifiers and $ variables.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
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

// unitMark starts every unit that UnitFile writes.
const unitMark = "# Written by `cardshare service install`"

// ErrNotOurs means the file at the unit's path was not written by
// `cardshare service install`: Remove leaves it alone.
var ErrNotOurs = errors.New("not written by `cardshare service install`")

// Ours reports whether there is a unit file at path, and fails with
// ErrNotOurs when `cardshare service install` did not write it.
func Ours(path string) (existed bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !bytes.HasPrefix(b, []byte(unitMark)) {
		return true, fmt.Errorf("%s: %w", path, ErrNotOurs)
	}
	return true, nil
}

// Remove deletes the unit file at path if `cardshare service install` wrote
// it. existed says whether there was a file; a missing one is no error, so
// that uninstalling twice is fine.
func Remove(path string) (existed bool, err error) {
	if existed, err = Ours(path); !existed || err != nil {
		return existed, err
	}
	if err := os.Remove(path); err != nil {
		return true, err
	}
	return true, nil
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
