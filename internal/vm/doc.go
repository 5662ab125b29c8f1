// Package vm turns the name of a virtual machine into an SSH destination,
// the way `cardshare expose NAME` and `cardshare resolve NAME` need it.
//
// A name is looked up in this order:
//
//  1. an ssh_config Host alias (any Host/Match block that applies to the
//     name and not to others, per ssh -G or sshdial's reader): that is all;
//  2. the VM managers that are installed, each asked with its own command
//     line tool: VirtualBox (a NAT port forward to guest port 22, else the
//     guest additions' IP address), libvirt (virsh domifaddr), Vagrant
//     (vagrant ssh-config, in a given directory), Lima (its generated
//     ssh.config), VMware Workstation/Fusion (vmrun getGuestIPAddress),
//     Parallels (prlctl list --full --json), UTM (utmctl ip-address) and,
//     on Windows, Hyper-V (PowerShell Get-VM). A manager that is not
//     installed is skipped silently (its tool is looked for on PATH, then
//     where its installer puts it: tools.go); a name that two managers
//     know is an error listing both;
//  3. otherwise the name is a host name, as for ssh.
//
// Every result is handed to sshdial.Resolve, so the user's ssh_config
// (User, IdentityFile, known_hosts...) still applies to addresses that a
// manager reports, and Vagrant's and Lima's own ssh_config files are read
// by OpenSSH's own parser (ssh -G -F).
//
// Each manager's lookup is a small function over the tool's output, tested
// with recorded output in testdata/; the commands run through a Runner that
// tests replace.
package vm
