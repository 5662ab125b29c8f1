package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
)

// libvirt: `virsh domstate NAME` says whether the domain exists and runs;
// `virsh domifaddr NAME [--source lease|agent|arp]` prints a table
//
//	 Name       MAC address          Protocol     Address
//	-------------------------------------------------------------------------------
//	 vnet0      52:54:00:6b:3c:58    ipv4         192.168.122.62/24
//
// The default source, lease, knows the addresses that libvirt's own DHCP
// server handed out; agent asks qemu-guest-agent in the guest and arp the
// host's ARP table, so each is tried in turn. virsh of a non-root user talks
// to qemu:///session, where few VMs live: when the domain is not there and
// LIBVIRT_DEFAULT_URI is not set, qemu:///system is asked too. libvirt knows
// no user or key: those come from ssh_config for the address.

const virsh = "virsh"

// parseDomIfAddr returns the IPv4 addresses of a domifaddr table, then the
// global IPv6 ones, without prefix lengths.
func parseDomIfAddr(out []byte) []string {
	var v4, v6 []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || (f[2] != "ipv4" && f[2] != "ipv6") {
			continue
		}
		// Interfaces with several addresses list the later ones with "-"
		// for name and MAC.
		addr := f[len(f)-1]
		ip, _, err := net.ParseCIDR(addr)
		if err != nil {
			ip = net.ParseIP(addr)
		}
		switch {
		case ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast():
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	return append(v4, v6...)
}

func findLibvirt(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	uris := [][]string{nil}
	if os.Getenv("LIBVIRT_DEFAULT_URI") == "" && os.Geteuid() != 0 {
		uris = append(uris, []string{"-c", "qemu:///system"})
	}
	for _, uri := range uris {
		args := func(a ...string) []string { return append(append([]string{}, uri...), a...) }
		out, err := r.run(ctx, "", virsh, args("domstate", name)...)
		if notInstalled(err) {
			return nil, "", nil
		}
		if err != nil {
			continue // not a domain of this connection
		}
		where := "libvirt domain " + name
		if uri != nil {
			where += " (" + uri[1] + ")"
		}
		state := strings.TrimSpace(string(out))
		if state != "running" {
			return nil, "", fmt.Errorf("%w: %s is %s; start it with `virsh %sstart %s`", ErrNoAddress, where, state, strings.Join(append(uri, ""), " "), name)
		}
		for _, source := range []string{"lease", "agent", "arp"} {
			out, err := r.run(ctx, "", virsh, args("domifaddr", name, "--source", source)...)
			if err != nil {
				continue
			}
			if ips := parseDomIfAddr(out); len(ips) > 0 {
				return &Candidate{Dest: bracket(ips[0]), Detail: fmt.Sprintf("%s: address %s (from the %s source of virsh domifaddr)", where, ips[0], source)}, "", nil
			}
		}
		return nil, "", fmt.Errorf("%w: %s runs but libvirt knows no address for it (DHCP lease, guest agent, ARP); install qemu-guest-agent in the guest, or put the VM in ssh_config", ErrNoAddress, where)
	}
	return nil, "no domain named " + name, nil
}

// bracket writes an IPv6 address so that a port may follow.
func bracket(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}
