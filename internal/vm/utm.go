package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// UTM (macOS) ships utmctl (utmapp/UTM utmctl/UTMCtl.swift):
//
//   - `utmctl list` prints the header "UUID  Status  Name" and then one
//     line per VM: the UUID, the status padded to 8 columns (stopped,
//     starting, started, pausing, paused, resuming, stopping) and the name,
//     which may contain spaces;
//   - `utmctl ip-address NAME` prints the guest's addresses one per line,
//     IPv4 before IPv6. It asks the QEMU guest agent, so it works only for
//     QEMU-backend VMs with qemu-guest-agent running in the guest (not for
//     Apple Virtualization VMs); it fails with "Error: ..." otherwise.
//
// utmctl drives UTM.app over Apple Events and launches it to answer
// (utmAppUrl, SBApplication). So that resolving a name never opens UTM,
// utmctl is asked only while UTM runs (`pgrep -x UTM`): no UTM VM runs
// without it. While it is closed, a VM bundle NAME.utm in UTM's default
// library (~/Library/Containers/com.utmapp.UTM/Data/Documents) is named as
// a VM to start.

const utmctl = "utmctl"

// utmInstalled reports whether utmctl is there (on PATH or in UTM.app),
// without running it; tests replace it.
var utmInstalled = func() bool {
	_, err := lookTool(utmctl)
	return err == nil
}

// utmRunning reports whether UTM.app runs; unknown (no pgrep) counts as
// running.
func (r *Resolver) utmRunning(ctx context.Context) bool {
	if hostOS != "darwin" {
		return true
	}
	_, err := r.run(ctx, "", "pgrep", "-x", "UTM")
	return err == nil || notInstalled(err)
}

func utmLibrary() string {
	return filepath.Join(homeDir(), "Library", "Containers", "com.utmapp.UTM", "Data", "Documents")
}

type utmVM struct{ uuid, status, name string }

func parseUTMList(out []byte) []utmVM {
	var vms []utmVM
	for l := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] == "UUID" {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), f[0]))
		rest = strings.TrimSpace(strings.TrimPrefix(rest, f[1]))
		vms = append(vms, utmVM{uuid: f[0], status: f[1], name: rest})
	}
	return vms
}

func findUTM(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	if hostOS == "darwin" && !utmInstalled() {
		return nil, "", nil
	}
	if !r.utmRunning(ctx) {
		if fi, err := os.Stat(filepath.Join(utmLibrary(), name+".utm")); err == nil && fi.IsDir() && plainName(name) {
			return nil, "", fmt.Errorf("%w: UTM VM %s is not running (UTM is closed); start it with `utmctl start %q`", ErrNoAddress, name, name)
		}
		return nil, "UTM is not running", nil
	}
	out, err := r.run(ctx, "", utmctl, "list")
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "utmctl list failed: " + firstLine(stderrOf(err)), nil
	}
	for _, v := range parseUTMList(out) {
		if v.name != name && !strings.EqualFold(v.uuid, name) {
			continue
		}
		if v.status != "started" {
			return nil, "", fmt.Errorf("%w: UTM VM %s is %s; start it with `utmctl start %q`", ErrNoAddress, name, v.status, v.name)
		}
		out, err := r.run(ctx, "", utmctl, "ip-address", v.uuid)
		var ips []string
		if err == nil {
			ips = usableIPs(strings.Split(string(out), "\n"))
		}
		if len(ips) == 0 {
			why := "it printed no usable address"
			if err != nil {
				why = firstLine(stderrOf(err))
			}
			return nil, "", fmt.Errorf("%w: UTM VM %s runs but utmctl ip-address failed (%s); it needs a QEMU-backend VM with qemu-guest-agent in the guest, else add a port forward to guest port 22 and put it in ssh_config", ErrNoAddress, name, why)
		}
		return &Candidate{Dest: bracket(ips[0]),
			Detail: fmt.Sprintf("UTM VM %s: the guest agent reports %s", name, ips[0])}, "", nil
	}
	return nil, "no VM named " + name, nil
}
