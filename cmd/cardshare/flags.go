package main

import "github.com/spf13/pflag"

// Flags that several subcommands share, declared once so that their names
// and help stay the same everywhere.

// sshConfigFlag is -F/--ssh-config, as for ssh -F.
func sshConfigFlag(f *pflag.FlagSet, p *string) {
	f.StringVarP(p, "ssh-config", "F", "", "ssh_config `file` to use instead of ~/.ssh/config")
}

// acceptNewFlag is --accept-new, as StrictHostKeyChecking accept-new.
func acceptNewFlag(f *pflag.FlagSet, p *bool) {
	f.BoolVar(p, "accept-new", false, "record the host key of a guest not yet in known_hosts (never accepts a changed key)")
}

// guestSocketFlag is --guest-socket; def says what the default is for this
// subcommand.
func guestSocketFlag(f *pflag.FlagSet, p *string, def string) {
	f.StringVar(p, "guest-socket", "", "socket `path` in the guest"+def)
}

// pcscdSocketFlag is --pcscd-socket; its default is *p.
func pcscdSocketFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "pcscd-socket", *p, "host pcscd socket `path`")
}
