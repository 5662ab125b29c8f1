package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/sshdial"
)

// reply is a recorded command result: stdout from a testdata file, or a
// failure with stderr from one.
type reply struct {
	stdout string // testdata file name
	stderr string // testdata file name; set means the command failed
}

// fakeTools answers for the installed tools from recorded output; a tool
// that has no entry at all is not installed. ssh runs for real.
type fakeTools struct {
	t       *testing.T
	replies map[string]reply // "dir|name args..." or "name args..."
	calls   []string
}

func (f *fakeTools) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	if name == "ssh" {
		return ExecRunner(ctx, dir, name, args...)
	}
	line := name + " " + strings.Join(args, " ")
	f.calls = append(f.calls, line)
	r, ok := f.replies[dir+"|"+line]
	if !ok {
		r, ok = f.replies[line]
	}
	if !ok {
		for k := range f.replies {
			if strings.HasPrefix(k, name+" ") || strings.Contains(k, "|"+name+" ") {
				// Installed, but not asked this before: fail like a
				// tool that does not know the name.
				return nil, &RunError{Cmd: line, Stderr: "unexpected", Err: errors.New("exit status 1")}
			}
		}
		return nil, fmt.Errorf("exec: %q: %w", name, exec.ErrNotFound)
	}
	var out []byte
	if r.stdout != "" {
		out = f.read(r.stdout)
	}
	if r.stderr != "" {
		return out, &RunError{Cmd: line, Stderr: strings.TrimSpace(string(f.read(r.stderr))), Err: errors.New("exit status 1")}
	}
	return out, nil
}

func (f *fakeTools) read(name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func newResolver(t *testing.T, replies map[string]reply) (*Resolver, *fakeTools) {
	f := &fakeTools{t: t, replies: replies}
	empty := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(empty, nil, 0o600)
	return &Resolver{SSHConfig: empty, Run: f.run, VagrantDir: t.TempDir(), LimaHome: filepath.Join(t.TempDir(), "nolima")}, f
}

func TestParseShowVMInfo(t *testing.T) {
	b, _ := os.ReadFile("testdata/vbox-hostonly.txt")
	info, err := parseShowVMInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if info.state != "running" || info.nics[1] != "nat" || info.nics[2] != "hostonly" || info.nics[3] != "none" || len(info.forwards) != 0 {
		t.Errorf("info %+v", info)
	}
	if n := info.natNetworks(); len(n) != 1 || n[0].String() != "10.0.2.0/24" {
		t.Errorf("NAT networks %v", n)
	}
	b, _ = os.ReadFile("testdata/vbox-nat-allifs-off.txt")
	info, _ = parseShowVMInfo(b)
	f, ok := info.sshForward()
	if !ok || f.name != "guestssh" || f.hostPort != 2200 || f.hostIP != "" || f.nic != 1 {
		t.Errorf("ssh forward %+v", f)
	}
	if _, err := parseShowVMInfo([]byte(`Forwarding(0)="ssh,tcp,,x,,22"`)); err == nil {
		t.Error("bad port accepted")
	}
}

func TestParseDomIfAddr(t *testing.T) {
	for file, want := range map[string][]string{
		"virsh-domifaddr.txt":       {"192.168.122.62"},
		"virsh-domifaddr-agent.txt": {"192.168.122.62", "fd00:122::62"},
		"virsh-domifaddr-empty.txt": nil,
	} {
		b, _ := os.ReadFile(filepath.Join("testdata", file))
		if got := parseDomIfAddr(b); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", file, got, want)
		}
	}
}

// Each manager alone, from recorded output.
func TestManagers(t *testing.T) {
	vbox := func(file string) string { return "VBoxManage showvminfo devvm --machinereadable|" + file }
	prop := "VBoxManage guestproperty get devvm /VirtualBox/GuestInfo/Net/"
	tests := []struct {
		name    string
		replies []string // "command line|stdout file" or "command line|!stderr file"
		find    func(context.Context, *Resolver, string) (*Candidate, string, error)
		vm      string
		dest    string // want a candidate with this Dest
		why     string // want no candidate, with this reason ("" = silent)
		errText string // want ErrNoAddress with this text
	}{
		{name: "virtualbox NAT forward", find: findVirtualBox, vm: "devvm",
			replies: []string{vbox("vbox-nat.txt")}, dest: "127.0.0.1:2222"},
		{name: "virtualbox forward on all interfaces, VM off", find: findVirtualBox, vm: "devvm",
			replies: []string{vbox("vbox-nat-allifs-off.txt")}, dest: "127.0.0.1:2200"},
		{name: "virtualbox host-only NIC and guest additions", find: findVirtualBox, vm: "devvm",
			replies: []string{vbox("vbox-hostonly.txt"), prop + "Count|vbox-guestprop-count.txt",
				prop + "0/V4/IP|vbox-guestprop-ip0.txt", prop + "1/V4/IP|vbox-guestprop-ip1.txt"},
			dest: "192.168.56.101"},
		{name: "virtualbox host-only NIC, no guest additions", find: findVirtualBox, vm: "devvm",
			replies: []string{vbox("vbox-hostonly.txt"), prop + "Count|vbox-guestprop-novalue.txt",
				prop + "0/V4/IP|vbox-guestprop-novalue.txt"},
			errText: "no NAT port forward to guest port 22"},
		{name: "virtualbox NAT without forward", find: findVirtualBox, vm: "devvm",
			replies: []string{vbox("vbox-nat-noforward.txt")}, errText: "natpf1 ssh,tcp,127.0.0.1,2222,,22"},
		{name: "virtualbox unknown VM", find: findVirtualBox, vm: "nosuchvm",
			replies: []string{"VBoxManage showvminfo nosuchvm --machinereadable|!vbox-notfound.stderr"}, why: "no VM named nosuchvm"},
		{name: "virtualbox not installed", find: findVirtualBox, vm: "devvm"},

		{name: "libvirt lease", find: findLibvirt, vm: "devvm",
			replies: []string{"virsh domstate devvm|virsh-domstate-running.txt",
				"virsh domifaddr devvm --source lease|virsh-domifaddr.txt"}, dest: "192.168.122.62"},
		{name: "libvirt agent after no lease", find: findLibvirt, vm: "devvm",
			replies: []string{"virsh domstate devvm|virsh-domstate-running.txt",
				"virsh domifaddr devvm --source lease|virsh-domifaddr-empty.txt",
				"virsh domifaddr devvm --source agent|virsh-domifaddr-agent.txt"}, dest: "192.168.122.62"},
		{name: "libvirt system connection", find: findLibvirt, vm: "devvm",
			replies: []string{"virsh domstate devvm|!virsh-notfound.stderr",
				"virsh -c qemu:///system domstate devvm|virsh-domstate-running.txt",
				"virsh -c qemu:///system domifaddr devvm --source lease|virsh-domifaddr.txt"}, dest: "192.168.122.62"},
		{name: "libvirt shut off", find: findLibvirt, vm: "devvm",
			replies: []string{"virsh domstate devvm|virsh-domstate-shutoff.txt"}, errText: "is shut off; start it with `virsh start devvm`"},
		{name: "libvirt no address", find: findLibvirt, vm: "devvm",
			replies: []string{"virsh domstate devvm|virsh-domstate-running.txt",
				"virsh domifaddr devvm --source lease|virsh-domifaddr-empty.txt",
				"virsh domifaddr devvm --source agent|!virsh-notfound.stderr",
				"virsh domifaddr devvm --source arp|virsh-domifaddr-empty.txt"}, errText: "knows no address"},
		{name: "libvirt unknown domain", find: findLibvirt, vm: "nosuchvm",
			replies: []string{"virsh domstate nosuchvm|!virsh-notfound.stderr", "virsh -c qemu:///system domstate nosuchvm|!virsh-notfound.stderr"},
			why:     "no domain named nosuchvm"},

		{name: "vagrant", find: findVagrant, vm: "default",
			replies: []string{"vagrant ssh-config default|vagrant-ssh-config.txt"}, dest: "default"},
		{name: "vagrant unknown machine", find: findVagrant, vm: "nosuchvm",
			replies: []string{"vagrant ssh-config nosuchvm|!vagrant-notfound.stderr"}, why: "no machine named nosuchvm"},
		{name: "vagrant machine not created", find: findVagrant, vm: "web",
			replies: []string{"vagrant ssh-config web|!vagrant-notcreated.stderr"}, errText: "not yet ready for SSH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Geteuid() == 0 && strings.Contains(tt.name, "system connection") {
				t.Skip("root's virsh talks to qemu:///system already")
			}
			m := map[string]reply{}
			for _, r := range tt.replies {
				cmd, file, _ := strings.Cut(r, "|")
				if f, ok := strings.CutPrefix(file, "!"); ok {
					m[cmd] = reply{stderr: f}
				} else {
					m[cmd] = reply{stdout: file}
				}
			}
			r, _ := newResolver(t, m)
			os.WriteFile(filepath.Join(r.VagrantDir, "Vagrantfile"), []byte("Vagrant.configure(\"2\") {}\n"), 0o644)
			t.Setenv("LIBVIRT_DEFAULT_URI", "")
			c, why, err := tt.find(context.Background(), r, tt.vm)
			switch {
			case tt.errText != "":
				if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("err = %v, want ErrNoAddress with %q", err, tt.errText)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case tt.dest != "":
				if c == nil || c.Dest != tt.dest || c.Detail == "" {
					t.Errorf("candidate %+v, want dest %s", c, tt.dest)
				}
			default:
				if c != nil || !strings.Contains(why, tt.why) || (tt.why == "") != (why == "") {
					t.Errorf("candidate %+v, why %q; want none, why %q", c, why, tt.why)
				}
			}
		})
	}
}

func TestLima(t *testing.T) {
	r := &Resolver{LimaHome: "testdata/lima"}
	c, _, err := findLima(context.Background(), r, "dev")
	if err != nil || c == nil || c.Dest != "lima-dev" || c.ConfigFile != "testdata/lima/dev/ssh.config" || !strings.Contains(c.Detail, "running") {
		t.Fatalf("candidate %+v, %v", c, err)
	}
	if c, why, _ := findLima(context.Background(), r, "other"); c != nil || why != "no instance named other" {
		t.Errorf("unknown instance: %+v %q", c, why)
	}
	r.LimaHome = filepath.Join(t.TempDir(), "none")
	if c, why, _ := findLima(context.Background(), r, "dev"); c != nil || why != "" {
		t.Errorf("no Lima: %+v %q", c, why)
	}
}

// The whole order, with sshdial.Resolve and the real ssh -G.
func TestResolve(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("needs ssh")
	}
	ctx := context.Background()
	nat := map[string]reply{"VBoxManage showvminfo devvm --machinereadable": {stdout: "vbox-nat.txt"}}

	t.Run("virtualbox", func(t *testing.T) {
		r, _ := newResolver(t, nat)
		tg, src, err := r.Resolve(ctx, "dev@devvm")
		if err != nil {
			t.Fatal(err)
		}
		if src.Kind != "virtualbox" || tg.HostName != "127.0.0.1" || tg.Port != 2222 || tg.User != "dev" || tg.Alias != "dev@devvm" {
			t.Errorf("target %+v from %+v", tg, src)
		}
	})

	t.Run("ssh_config alias wins", func(t *testing.T) {
		r, f := newResolver(t, nat)
		os.WriteFile(r.SSHConfig, []byte("Host devvm\n  HostName 10.1.2.3\n  User me\n"), 0o600)
		tg, src, err := r.Resolve(ctx, "devvm")
		if err != nil || src.Kind != "ssh_config" || tg.HostName != "10.1.2.3" {
			t.Fatalf("target %+v from %+v, %v", tg, src, err)
		}
		if len(f.calls) != 0 {
			t.Errorf("VM managers asked although ssh_config has the name: %v", f.calls)
		}
	})

	t.Run("ssh_config block without HostName", func(t *testing.T) {
		r, _ := newResolver(t, nat)
		os.WriteFile(r.SSHConfig, []byte("Host *.lan\n  User lan\nHost devvm\n  Port 2022\nHost *\n  ControlPath ~/.ssh/cm-%C\n"), 0o600)
		tg, src, err := r.Resolve(ctx, "devvm")
		if err != nil || src.Kind != "ssh_config" || tg.Port != 2022 {
			t.Errorf("target %+v from %+v, %v", tg, src, err)
		}
		// Host * and ControlPath's %C do not make every name an alias.
		if ok, err := r.isSSHAlias(ctx, "other"); ok || err != nil {
			t.Errorf("other is an alias: %v %v", ok, err)
		}
		if ok, _ := r.isSSHAlias(ctx, "box.lan"); !ok {
			t.Error("box.lan, matched by Host *.lan, is not an alias")
		}
	})

	t.Run("vagrant", func(t *testing.T) {
		r, _ := newResolver(t, map[string]reply{"vagrant ssh-config default": {stdout: "vagrant-ssh-config.txt"}})
		os.WriteFile(filepath.Join(r.VagrantDir, "Vagrantfile"), nil, 0o644)
		tg, src, err := r.Resolve(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		if src.Kind != "vagrant" || tg.Port != 2200 || tg.User != "vagrant" || tg.StrictHostKeyChecking != "no" || len(tg.KnownHostsFiles) != 0 {
			t.Errorf("target %+v from %+v", tg, src)
		}
		if src.ConfigFile != "" {
			t.Errorf("source names the temporary config %s", src.ConfigFile)
		}
	})

	t.Run("lima", func(t *testing.T) {
		r, _ := newResolver(t, nil)
		r.LimaHome = "testdata/lima"
		tg, src, err := r.Resolve(ctx, "dev")
		if err != nil {
			t.Fatal(err)
		}
		if src.Kind != "lima" || tg.Port != 60022 || tg.User != "alice" || tg.HostName != "127.0.0.1" || tg.Alias != "dev" {
			t.Errorf("target %+v from %+v", tg, src)
		}
	})

	t.Run("ambiguous", func(t *testing.T) {
		m := map[string]reply{
			"VBoxManage showvminfo dev --machinereadable": {stdout: "vbox-nat.txt"},
			"virsh domstate dev":                          {stdout: "virsh-domstate-running.txt"},
			"virsh domifaddr dev --source lease":          {stdout: "virsh-domifaddr.txt"},
		}
		r, _ := newResolver(t, m)
		r.LimaHome = "testdata/lima"
		_, _, err := r.Resolve(ctx, "dev")
		if !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("err = %v, want ErrAmbiguous", err)
		}
		for _, want := range []string{`"dev" names 3 VMs`, "virtualbox (127.0.0.1:2222)", "libvirt (192.168.122.62)", "lima (lima-dev via testdata/lima/dev/ssh.config)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v lacks %q", err, want)
			}
		}
	})

	t.Run("known but unreachable", func(t *testing.T) {
		r, _ := newResolver(t, map[string]reply{"VBoxManage showvminfo devvm --machinereadable": {stdout: "vbox-nat-noforward.txt"}})
		_, _, err := r.Resolve(ctx, "devvm")
		if !errors.Is(err, ErrNoAddress) {
			t.Errorf("err = %v, want ErrNoAddress", err)
		}
	})

	t.Run("host name", func(t *testing.T) {
		r, _ := newResolver(t, map[string]reply{"VBoxManage showvminfo build.example.org --machinereadable": {stderr: "vbox-notfound.stderr"}})
		tg, src, err := r.Resolve(ctx, "build.example.org")
		if err != nil || src.Kind != "host name" || tg.HostName != "build.example.org" || tg.Port != 22 {
			t.Errorf("target %+v from %+v, %v", tg, src, err)
		}
		if !slices.Contains(src.Looked, "virtualbox: no VM named build.example.org") || !src.Unknown() {
			t.Errorf("looked %q", src.Looked)
		}
		want := "build.example.org is not a Host in ~/vms.conf, nor a VM that VirtualBox knows (no VM named build.example.org); libvirt, Vagrant, Lima and VMware are not installed (or have no VMs here)"
		if got := src.WhereLooked("build.example.org", "~/vms.conf"); got != want {
			t.Errorf("WhereLooked:\n got %s\nwant %s", got, want)
		}
		two := Source{Kind: "host name", Looked: []string{"virtualbox: no VM named x", "libvirt: no domain named x"}}
		want = "x is not a Host in ~/.ssh/config, nor a VM that VirtualBox or libvirt know (no VM named x; no domain named x); Vagrant, Lima and VMware are not installed (or have no VMs here)"
		if got := two.WhereLooked("x", ""); got != want {
			t.Errorf("WhereLooked:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("missing ssh_config", func(t *testing.T) {
		r, f := newResolver(t, nat)
		r.SSHConfig = filepath.Join(t.TempDir(), "none")
		_, _, err := r.Resolve(ctx, "devvm")
		if !errors.Is(err, sshdial.ErrConfigFile) || !errors.Is(err, os.ErrNotExist) || len(f.calls) != 0 {
			t.Errorf("err = %v (calls %v), want ErrConfigFile wrapping ErrNotExist before asking anyone", err, f.calls)
		}
	})

	t.Run("destination", func(t *testing.T) {
		r, f := newResolver(t, nat)
		for _, d := range []string{"dev@devvm:2222", "10.0.0.7", "[::1]:22"} {
			_, src, err := r.Resolve(ctx, d)
			if err != nil || src.Kind != "destination" {
				t.Errorf("%s: %+v, %v", d, src, err)
			}
		}
		if len(f.calls) != 0 {
			t.Errorf("managers asked for an address: %v", f.calls)
		}
	})
}

// Without an ssh program (Windows without its OpenSSH, Wine) ssh_config
// still decides first, read by cardshare as sshdial.Resolve reads it: a
// Host alias is not looked up in the VM managers, and another name is.
func TestResolveAliasWithoutSSH(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	r, f := newResolver(t, map[string]reply{"VBoxManage showvminfo devvm --machinereadable": {stdout: "vbox-nat.txt"}})
	os.WriteFile(r.SSHConfig, []byte("Host devvm\n  HostName 192.0.2.7\n  Port 2022\n  User me\nHost *\n  ServerAliveInterval 5\n"), 0o600)
	tg, src, err := r.Resolve(ctx, "devvm")
	if err != nil || src.Kind != "ssh_config" || tg.HostName != "192.0.2.7" || tg.Port != 2022 || tg.User != "me" {
		t.Errorf("target %+v from %+v, %v", tg, src, err)
	}
	if len(f.calls) != 0 {
		t.Errorf("VM managers asked although ssh_config has the name: %v", f.calls)
	}
	if ok, err := r.isSSHAlias(ctx, "other"); ok || err != nil {
		t.Errorf("other is an alias: %v, %v", ok, err)
	}
}
