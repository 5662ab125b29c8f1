package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
)

// Parallels Desktop (macOS): `prlctl list --all --full --json` prints every
// VM as {"uuid", "status", "ip_configured", "name"} (the columns of
// `prlctl list`; Parallels Desktop Command-Line Reference, "prlctl list").
// ip_configured is what Parallels Tools report, "-" when unknown; the
// Parallels Vagrant provider reads the same field
// (Parallels/vagrant-parallels lib/vagrant-parallels/driver/base.rb,
// read_guest_ip_prlctl). Status is running, stopped, suspended, paused...

const prlctl = "prlctl"

type prlVM struct {
	UUID   string `json:"uuid"`
	Status string `json:"status"`
	IP     string `json:"ip_configured"`
	Name   string `json:"name"`
}

func parsePrlctlList(out []byte) ([]prlVM, error) {
	var vms []prlVM
	if err := json.Unmarshal(out, &vms); err != nil {
		return nil, fmt.Errorf("prlctl printed bad JSON: %w", err)
	}
	return vms, nil
}

// addresses returns the usable IPv4 addresses of ip_configured, then the
// global IPv6 ones (the field may hold several, separated by spaces or
// commas).
func (v prlVM) addresses() []string {
	return usableIPs(strings.FieldsFunc(v.IP, func(r rune) bool { return r == ' ' || r == ',' }))
}

func findParallels(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	out, err := r.run(ctx, "", prlctl, "list", "--all", "--full", "--json")
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "prlctl list failed: " + firstLine(stderrOf(err)), nil
	}
	vms, err := parsePrlctlList(out)
	if err != nil {
		return nil, "", fmt.Errorf("%w: Parallels VM %s: %w", ErrNoAddress, name, err)
	}
	for _, v := range vms {
		if v.Name != name && !strings.EqualFold(strings.Trim(v.UUID, "{}"), strings.Trim(name, "{}")) {
			continue
		}
		if v.Status != "running" {
			return nil, "", fmt.Errorf("%w: Parallels VM %s is %s; start it with `prlctl start %q`", ErrNoAddress, name, v.Status, v.Name)
		}
		ips := v.addresses()
		if len(ips) == 0 {
			return nil, "", fmt.Errorf("%w: Parallels VM %s runs but reports no IP address; install Parallels Tools in the guest, or put the VM in ssh_config", ErrNoAddress, name)
		}
		return &Candidate{Dest: bracket(ips[0]),
			Detail: fmt.Sprintf("Parallels VM %s: Parallels Tools report %s", name, ips[0])}, "", nil
	}
	return nil, "no VM named " + name, nil
}

// usableIPs keeps the addresses the host can use to reach a guest: IPv4
// first, then global IPv6; no loopback, link-local or unspecified ones.
func usableIPs(addrs []string) []string {
	var v4, v6 []string
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if i := strings.IndexByte(a, '/'); i >= 0 {
			a = a[:i]
		}
		ip := net.ParseIP(a)
		switch {
		case ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified():
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	return append(v4, v6...)
}
