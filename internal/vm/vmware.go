package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// VMware Workstation (Windows, Linux) and Fusion (macOS) are driven with
// vmrun (VMware, "Using vmrun to Control Virtual Machines", VIX docs):
//
//   - `vmrun list` prints "Total running VMs: N" and then the .vmx path of
//     each running VM, one per line;
//   - `vmrun getGuestIPAddress PATH.vmx` prints the guest's IP address as
//     VMware Tools (or open-vm-tools) report it; without Tools it fails
//     with "Error: The VMware Tools are not running in the virtual machine"
//     (vmrun prints its errors on standard output).
//
// A VM is named by its displayName (the name in the VMware window, a line
// of the .vmx file), or by its .vmx file name without ".vmx", or by its
// Fusion bundle name without ".vmwarevm". VMs that are not running are
// found in the library's inventory file (vmInventory on Fusion,
// inventory.vmls on Workstation: `vmlistN.config = "PATH"` and
// `vmlistN.DisplayName = "NAME"` lines in .vmx syntax), only to say
// "start it" instead of "no such VM".

const vmrun = "vmrun"

// parseVMX reads the key = "value" lines of a .vmx or inventory file.
// Keys are returned lower-case (VMware treats them so); values are
// unescaped (|XX is the byte with hex code XX, as in "|22" for a quote).
func parseVMX(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		m[k] = vmxUnescape(v)
	}
	return m
}

func vmxUnescape(s string) string {
	if !strings.Contains(s, "|") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '|' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseVMRunList returns the .vmx paths of `vmrun list`.
func parseVMRunList(out []byte) []string {
	var paths []string
	for l := range strings.SplitSeq(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Total running VMs:") {
			continue
		}
		paths = append(paths, l)
	}
	return paths
}

// vmxNames are the names a VM answers to: its .vmx file name and bundle
// name without their extensions, and displayName when the file is
// readable.
func vmxNames(vmx string) []string {
	base := baseName(vmx)
	names := []string{strings.TrimSuffix(base, filepath.Ext(base))}
	if dir := strings.TrimSuffix(vmx, base); dir != "" {
		bundle := baseName(strings.TrimRight(dir, `/\`))
		if b, ok := strings.CutSuffix(bundle, ".vmwarevm"); ok {
			names = append(names, b)
		}
	}
	if b, ok := readVMX(vmx); ok {
		if d := parseVMX(b)["displayname"]; d != "" {
			names = append(names, d)
		}
	}
	return names
}

// readVMX reads a .vmx file if it is a regular file of sane size (they are
// a few KiB); a path from vmrun or the inventory may name anything.
func readVMX(p string) ([]byte, bool) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return nil, false
	}
	b, err := os.ReadFile(p)
	return b, err == nil
}

func vmxMatches(vmx, name string, displayName string) bool {
	names := vmxNames(vmx)
	if displayName != "" {
		names = append(names, displayName)
	}
	for _, n := range names {
		if sameFileName(n, name) {
			return true
		}
	}
	return false
}

// vmwareInventories are the inventory files of the VMware library.
func vmwareInventories() []string {
	switch hostOS {
	case "darwin":
		return []string{filepath.Join(homeDir(), "Library", "Application Support", "VMware Fusion", "vmInventory")}
	case "windows":
		if d := os.Getenv("APPDATA"); d != "" {
			return []string{filepath.Join(d, "VMware", "inventory.vmls")}
		}
		return nil
	}
	return []string{filepath.Join(homeDir(), ".vmware", "inventory.vmls")}
}

// inventoryVMX returns the .vmx path that an inventory file lists for
// name, or "".
func inventoryVMX(inv []byte, name string) string {
	m := parseVMX(inv)
	for k, path := range m {
		id, ok := strings.CutSuffix(k, ".config")
		if !ok || !strings.HasPrefix(id, "vmlist") || !strings.HasSuffix(path, ".vmx") {
			continue
		}
		if vmxMatches(path, name, m[id+".displayname"]) {
			return path
		}
	}
	return ""
}

func findVMware(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	out, err := r.run(ctx, "", vmrun, "list")
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "vmrun list failed: " + firstLine(vmrunMessage(out, err)), nil
	}
	for _, vmx := range parseVMRunList(out) {
		if !vmxMatches(vmx, name, "") {
			continue
		}
		out, err := r.run(ctx, "", vmrun, "getGuestIPAddress", vmx)
		ip := net.ParseIP(strings.TrimSpace(string(out)))
		if err != nil || ip == nil || ip.IsUnspecified() {
			msg := "it printed no address"
			if err != nil {
				msg = firstLine(vmrunMessage(out, err))
			}
			return nil, "", fmt.Errorf("%w: VMware VM %s runs but vmrun getGuestIPAddress failed (%s); install VMware Tools or open-vm-tools in the guest, or put the VM in ssh_config", ErrNoAddress, name, msg)
		}
		return &Candidate{Dest: bracket(ip.String()),
			Detail: fmt.Sprintf("VMware VM %s (%s): VMware Tools report %s", name, tildePath(vmx), ip)}, "", nil
	}
	for _, inv := range vmwareInventories() {
		b, err := os.ReadFile(inv)
		if err != nil {
			continue
		}
		if vmx := inventoryVMX(b, name); vmx != "" {
			return nil, "", fmt.Errorf("%w: VMware VM %s is not running; start it with `vmrun start %q nogui`", ErrNoAddress, name, vmx)
		}
	}
	return nil, "no running VM named " + name, nil
}

// vmrunMessage is what a failed vmrun said: it prints "Error: ..." on
// standard output.
func vmrunMessage(out []byte, err error) string {
	if s := strings.TrimSpace(string(out)); s != "" {
		return strings.TrimPrefix(s, "Error: ")
	}
	return stderrOf(err)
}
