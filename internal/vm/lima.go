package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Lima writes an ssh_config for each instance to $LIMA_HOME/NAME/ssh.config
// (default ~/.lima) with the Host alias lima-NAME; `limactl show-ssh` is
// deprecated in favour of `ssh -F ~/.lima/NAME/ssh.config lima-NAME`
// (lima cmd/limactl/show-ssh.go). The host agent's PID file ha.pid exists
// while the instance runs.

func (r *Resolver) limaHome() string {
	if r.LimaHome != "" {
		return r.LimaHome
	}
	if d := os.Getenv("LIMA_HOME"); d != "" {
		return d
	}
	return filepath.Join(homeDir(), ".lima")
}

func findLima(_ context.Context, r *Resolver, name string) (*Candidate, string, error) {
	if !plainName(name) {
		return nil, "", nil
	}
	home := r.limaHome()
	if _, err := os.Stat(home); err != nil {
		return nil, "", nil // Lima is not used here
	}
	dir := filepath.Join(home, name)
	cfg := filepath.Join(dir, "ssh.config")
	if _, err := os.Stat(cfg); err != nil {
		return nil, "no instance named " + name, nil
	}
	state := "running"
	if _, err := os.Stat(filepath.Join(dir, "ha.pid")); err != nil {
		state = "not running? (no ha.pid; `limactl start " + name + "`)"
	}
	return &Candidate{Dest: "lima-" + name, ConfigFile: cfg,
		Detail: fmt.Sprintf("Lima instance %s, %s: %s", name, state, tildePath(cfg))}, "", nil
}
