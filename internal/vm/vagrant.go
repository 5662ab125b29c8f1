package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Vagrant: `vagrant ssh-config NAME`, run in the directory of the
// Vagrantfile, prints an ssh_config block for the machine (template
// templates/commands/ssh_config/config.erb in hashicorp/vagrant): Host,
// HostName, User, Port, UserKnownHostsFile /dev/null, StrictHostKeyChecking
// no, IdentityFile, IdentitiesOnly... It is resolved with ssh -G -F, like
// `ssh -F <(vagrant ssh-config) NAME`. Vagrant is only asked when the
// directory has a Vagrantfile, since it is slow to start.

const vagrant = "vagrant"

// vagrantHost returns the first Host alias of ssh-config output.
func vagrantHost(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.EqualFold(f[0], "Host") {
			return f[1]
		}
	}
	return ""
}

func (r *Resolver) vagrantDir() string {
	if r.VagrantDir != "" {
		return r.VagrantDir
	}
	if d := os.Getenv("VAGRANT_CWD"); d != "" {
		return d
	}
	d, _ := os.Getwd()
	return d
}

func findVagrant(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	dir := r.vagrantDir()
	if _, err := os.Stat(filepath.Join(dir, "Vagrantfile")); err != nil {
		return nil, "", nil
	}
	out, err := r.run(ctx, dir, vagrant, "ssh-config", name)
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		msg := stderrOf(err)
		if strings.Contains(msg, "not found configured") {
			return nil, fmt.Sprintf("no machine named %s in %s", name, tildePath(dir)), nil
		}
		return nil, "", fmt.Errorf("%w: Vagrant machine %s in %s: %s (is it up? `vagrant up %s`)", ErrNoAddress, name, tildePath(dir), firstSentence(msg), name)
	}
	host := vagrantHost(out)
	if host == "" {
		return nil, "", fmt.Errorf("%w: vagrant ssh-config %s printed no Host line", ErrNoAddress, name)
	}
	return &Candidate{Dest: host, Config: out,
		Detail: fmt.Sprintf("Vagrant machine %s in %s (vagrant ssh-config)", name, tildePath(dir))}, "", nil
}

// firstSentence returns the first sentence of Vagrant's message, which it
// wraps over several lines.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
