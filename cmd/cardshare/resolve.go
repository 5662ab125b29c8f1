package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

type resolveOptions struct {
	sshConfig  string
	vagrantDir string
	limaHome   string
}

func newResolveCmd(g *cmdutil.Globals) *cobra.Command {
	o := &resolveOptions{}
	cmd := &cobra.Command{
		Use:   "resolve NAME",
		Short: "Show where cardshare would connect for NAME, and where that came from",
		Long: `resolve shows the SSH destination that expose, guest setup and doctor use for
NAME, without connecting. NAME is looked up in this order:

  1. an ssh_config Host alias (any Host or Match block that applies to NAME);
  2. the VM managers that are installed:
       VirtualBox  VBoxManage showvminfo: a NAT port forward to guest port 22,
                   else the guest additions' address on a host-only or bridged NIC
       libvirt     virsh domifaddr (DHCP lease, guest agent, ARP)
       Vagrant     vagrant ssh-config NAME, in the directory of the Vagrantfile
       Lima        ~/.lima/NAME/ssh.config (Host lima-NAME)
       VMware      vmrun getGuestIPAddress (Workstation, Fusion; needs VMware
                   Tools or open-vm-tools in the guest); NAME is the VM's
                   display name or its .vmx/.vmwarevm name
       Parallels   prlctl list --full --json: the address Parallels Tools report
       UTM         utmctl ip-address, asked only while UTM runs (needs the QEMU
                   backend and qemu-guest-agent in the guest)
       Hyper-V     PowerShell Get-VM (Windows; needs membership of "Hyper-V
                   Administrators" and the guest's integration services)
     A name that two managers know is an error listing both;
  3. otherwise a host name, as for ssh.

[user@]NAME sets the login user for addresses a manager reports; user@host:port
and IP addresses are used as they are. Your ssh_config still applies to the
addresses the managers report (User, IdentityFile, known_hosts).`,
		Example: `  cardshare resolve devvm
  cardshare resolve dev@devvm
  cardshare resolve --vagrant-dir ~/src/project default`,
		Args: exactGuest("resolve"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResolve(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	cmdutil.SSHConfigFlag(f, &o.sshConfig)
	f.StringVar(&o.vagrantDir, "vagrant-dir", "", "`directory` of the Vagrantfile (default: $VAGRANT_CWD, else the current directory)")
	f.StringVar(&o.limaHome, "lima-home", "", "Lima's `directory` (default: $LIMA_HOME, else ~/.lima)")
	return cmd
}

func runResolve(ctx context.Context, g *cmdutil.Globals, o *resolveOptions, name string, w io.Writer) error {
	r := &vm.Resolver{SSHConfig: o.sshConfig, VagrantDir: o.vagrantDir, LimaHome: o.limaHome}
	t, src, err := r.Resolve(ctx, name)
	if g.Verbose || err != nil {
		for _, l := range src.Looked {
			fmt.Fprintf(w, "looked at %s\n", l)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	printTarget(w, name, t, src)
	return nil
}

func printTarget(w io.Writer, name string, t sshdial.Target, src vm.Source) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-13s %s\n", k+":", v)
		}
	}
	fmt.Fprintf(w, "%s\n", name)
	from := src.Kind
	if src.Detail != "" {
		from += ": " + src.Detail
	}
	line("from", from)
	cfg := src.ConfigFile
	switch {
	case src.Kind == "vagrant":
		cfg = "the output of vagrant ssh-config"
	case cfg == "":
		cfg = "~/.ssh/config and /etc/ssh/ssh_config"
	}
	line("ssh_config", cfg)
	line("connects to", fmt.Sprintf("%s@%s port %d", t.User, t.HostName, t.Port))
	if len(t.ProxyJump) > 0 {
		line("through", strings.Join(t.ProxyJump, ", "))
	}
	line("identities", strings.Join(t.IdentityFiles, ", "))
	if t.IdentitiesOnly {
		line("agent keys", "only those of the identities (IdentitiesOnly)")
	}
	line("agent", t.IdentityAgent)
	kh := strings.Join(t.KnownHostsFiles, ", ")
	if kh == "" {
		kh = "none (UserKnownHostsFile /dev/null)"
	}
	if t.HostKeyAlias != "" {
		kh += ", as " + t.HostKeyAlias
	}
	line("known hosts", kh+" (StrictHostKeyChecking "+t.StrictHostKeyChecking+")")
}
