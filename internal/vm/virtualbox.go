package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// VirtualBox: `VBoxManage showvminfo NAME --machinereadable` prints
// key="value" lines. A NIC is `nicN="nat"` (or hostonly, bridged,
// natnetwork...), and the NAT port forwards of the NIC whose nicN line came
// last are `Forwarding(K)="name,proto,hostip,hostport,guestip,guestport"`,
// as in Vagrant's VirtualBox driver (read_forwarded_ports, version_5_0.rb).
// An empty or 0.0.0.0 host IP listens on every interface, so 127.0.0.1
// reaches it.
//
// Without such a forward the guest additions publish the guest's addresses
// as /VirtualBox/GuestInfo/Net/I/V4/IP (I counts the guest's interfaces up
// to /VirtualBox/GuestInfo/Net/Count); `VBoxManage guestproperty get`
// prints "Value: 192.168.56.10" or "No value set!". A NAT NIC's address
// (10.0.N+1.15 for NIC N) cannot be reached from the host, so only
// addresses outside the NAT networks count.

const vboxManage = "VBoxManage"

// vboxInfo is what findVirtualBox needs from showvminfo.
type vboxInfo struct {
	state    string
	nics     map[int]string // NIC number -> attachment type
	natNets  map[int]string // NIC number -> natnetN value ("nat" = default)
	forwards []vboxForward
}

type vboxForward struct {
	nic                          int
	name, proto, hostIP, guestIP string
	hostPort, guestPort          int
}

func parseShowVMInfo(out []byte) (vboxInfo, error) {
	info := vboxInfo{nics: map[int]string{}, natNets: map[int]string{}}
	curNIC := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		k = strings.Trim(k, `"`)
		v = strings.Trim(v, `"`)
		switch {
		case k == "VMState":
			info.state = v
		case strings.HasPrefix(k, "nic") && isDigits(k[3:]):
			n, _ := strconv.Atoi(k[3:])
			info.nics[n] = v
			curNIC = n
		case strings.HasPrefix(k, "natnet") && isDigits(k[6:]):
			n, _ := strconv.Atoi(k[6:])
			info.natNets[n] = v
		case strings.HasPrefix(k, "Forwarding("):
			f, err := csv.NewReader(strings.NewReader(v)).Read()
			if err != nil || len(f) != 6 {
				return info, fmt.Errorf("VBoxManage printed a bad port forward %s=%q", k, v)
			}
			hp, err1 := strconv.Atoi(f[3])
			gp, err2 := strconv.Atoi(f[5])
			if err1 != nil || err2 != nil {
				return info, fmt.Errorf("VBoxManage printed a bad port forward %s=%q", k, v)
			}
			info.forwards = append(info.forwards, vboxForward{nic: curNIC, name: f[0], proto: f[1],
				hostIP: f[2], hostPort: hp, guestIP: f[4], guestPort: gp})
		}
	}
	return info, sc.Err()
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// sshForward returns the first TCP forward to guest port 22.
func (info vboxInfo) sshForward() (vboxForward, bool) {
	for _, f := range info.forwards {
		if f.proto == "tcp" && f.guestPort == 22 {
			return f, true
		}
	}
	return vboxForward{}, false
}

// natNetworks are the guest-side networks of the VM's NAT NICs.
func (info vboxInfo) natNetworks() []*net.IPNet {
	var nets []*net.IPNet
	for n, typ := range info.nics {
		if typ != "nat" {
			continue
		}
		cidr := fmt.Sprintf("10.0.%d.0/24", n+1)
		if v := info.natNets[n]; v != "" && v != "nat" {
			cidr = v
		}
		if _, ipn, err := net.ParseCIDR(cidr); err == nil {
			nets = append(nets, ipn)
		}
	}
	return nets
}

// reachableNIC reports whether some NIC puts the guest on a network the
// host can reach directly.
func (info vboxInfo) reachableNIC() bool {
	for _, typ := range info.nics {
		switch typ {
		case "hostonly", "hostonlynet", "bridged":
			return true
		}
	}
	return false
}

func findVirtualBox(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	out, err := r.run(ctx, "", vboxManage, "showvminfo", name, "--machinereadable")
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		if msg := stderrOf(err); !strings.Contains(msg, "Could not find a registered machine") {
			return nil, "VBoxManage failed: " + firstLine(msg), nil
		}
		return nil, "no VM named " + name, nil
	}
	info, err := parseShowVMInfo(out)
	if err != nil {
		return nil, "", fmt.Errorf("%w: VirtualBox VM %s: %w", ErrNoAddress, name, err)
	}
	state := ""
	if info.state != "" && info.state != "running" {
		state = ", VM " + info.state
	}
	if f, ok := info.sshForward(); ok {
		host := f.hostIP
		if host == "" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		return &Candidate{
			Dest:   net.JoinHostPort(host, strconv.Itoa(f.hostPort)),
			Detail: fmt.Sprintf("VirtualBox VM %s: NAT port forward %q %s:%d to guest port 22%s", name, f.name, host, f.hostPort, state),
		}, "", nil
	}
	if info.reachableNIC() && info.state == "running" {
		if ip, i := r.vboxGuestIP(ctx, name, info.natNetworks()); ip != "" {
			return &Candidate{Dest: ip, Detail: fmt.Sprintf("VirtualBox VM %s: guest additions report %s on the guest's interface %d", name, ip, i)}, "", nil
		}
	}
	fix := fmt.Sprintf("add a NAT port forward to guest port 22: `VBoxManage controlvm %s natpf1 ssh,tcp,127.0.0.1,2222,,22` (or modifyvm --natpf1 while it is off)", name)
	if info.reachableNIC() && info.state != "running" {
		fix = fmt.Sprintf("start it (`VBoxManage startvm %s --type headless`), or %s", name, fix)
	}
	return nil, "", fmt.Errorf("%w: VirtualBox VM %s has no NAT port forward to guest port 22 and no known guest address%s; %s", ErrNoAddress, name, state, fix)
}

// vboxGuestIP returns the first IPv4 address the guest additions report
// outside the NAT networks, and the guest interface index.
func (r *Resolver) vboxGuestIP(ctx context.Context, name string, natNets []*net.IPNet) (string, int) {
	count := 1
	if v, ok := r.vboxProperty(ctx, name, "/VirtualBox/GuestInfo/Net/Count"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 64 {
			count = n
		}
	}
	for i := range count {
		v, ok := r.vboxProperty(ctx, name, fmt.Sprintf("/VirtualBox/GuestInfo/Net/%d/V4/IP", i))
		ip := net.ParseIP(v)
		if !ok || ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
			continue
		}
		inNAT := false
		for _, n := range natNets {
			inNAT = inNAT || n.Contains(ip)
		}
		if !inNAT {
			return ip.String(), i
		}
	}
	return "", 0
}

// vboxProperty reads a guest property: "Value: X", or "No value set!".
func (r *Resolver) vboxProperty(ctx context.Context, name, prop string) (string, bool) {
	out, err := r.run(ctx, "", vboxManage, "guestproperty", "get", name, prop)
	if err != nil {
		return "", false
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "Value: ")
	return strings.TrimSpace(v), ok
}
