package cmdutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/cardshare/cardshare/config"
)

// ConfigPath is the --config file made absolute (a service does not run
// in this directory), or the default file.
func ConfigPath(flag string) (string, error) {
	if flag == "" {
		return config.DefaultPath()
	}
	return filepath.Abs(flag)
}

// LoadConfig loads the file, with a hint when it does not exist.
func LoadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, WithHint(err, "create it: `cardshare config --help` shows every key, or pass another file with --config")
	}
	return c, err
}

// CheckConfig loads the config file of --config (flag) and prints its
// warnings, for the commands that check it before anything else.
func CheckConfig(flag string, stderr io.Writer) (string, *config.Config, error) {
	file, err := ConfigPath(flag)
	if err != nil {
		return "", nil, err
	}
	c, err := LoadConfig(file)
	if err != nil {
		return "", nil, err
	}
	for _, w := range c.Warnings() {
		fmt.Fprintf(stderr, "cardshare: warning: %s\ncardshare: hint: %s\n", w, w.Hint)
	}
	return file, c, nil
}
