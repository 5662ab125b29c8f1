package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Hyper-V (Windows) is asked through Windows PowerShell's Hyper-V module:
//
//	Get-VM | Where-Object { $_.Name -eq 'NAME' } | ForEach-Object {
//	  [pscustomobject]@{ Name = $_.Name; State = [string]$_.State;
//	    IPAddresses = @($_.NetworkAdapters | ForEach-Object { $_.IPAddresses }) }
//	} | ConvertTo-Json -Compress
//
// Get-VM returns VirtualMachine objects whose NetworkAdapters carry the
// IPAddresses that the guest's integration services (hv_kvp_daemon on
// Linux) report, and whose State is Running, Off, Saved, Paused...
// (Microsoft Learn: Get-VM, VMNetworkAdapter; "Get-VM NAME | Select
// -ExpandProperty NetworkAdapters | Select IPAddresses" is the usual
// one-liner). Where-Object is used instead of -Name because -Name takes
// wildcards. ConvertTo-Json prints one object for one match and an array
// for several; [string] makes State a name rather than Windows PowerShell
// 5.1's enum number. Get-VM needs membership of "Hyper-V Administrators"
// (or an elevated shell); on Windows editions without Hyper-V the cmdlet
// does not exist, which counts as "not installed".

const powershell = "powershell.exe"

type hypervVM struct {
	Name        string
	State       string
	IPAddresses []string
}

// hypervScript is the PowerShell command for name, which is quoted as a
// single-quoted string (where only ' is special, doubled).
func hypervScript(name string) string {
	q := "'" + strings.ReplaceAll(name, "'", "''") + "'"
	return "Get-VM | Where-Object { $_.Name -eq " + q + " } | ForEach-Object { [pscustomobject]@{ Name = $_.Name; State = [string]$_.State; " +
		"IPAddresses = @($_.NetworkAdapters | ForEach-Object { $_.IPAddresses }) } } | ConvertTo-Json -Compress"
}

func parseHyperV(out []byte) ([]hypervVM, error) {
	out = []byte(strings.TrimSpace(strings.TrimPrefix(string(out), "\ufeff")))
	if len(out) == 0 {
		return nil, nil
	}
	if out[0] == '[' {
		var vms []hypervVM
		err := json.Unmarshal(out, &vms)
		return vms, err
	}
	var vm hypervVM
	if err := json.Unmarshal(out, &vm); err != nil {
		return nil, err
	}
	return []hypervVM{vm}, nil
}

func findHyperV(ctx context.Context, r *Resolver, name string) (*Candidate, string, error) {
	if hostOS != "windows" || strings.ContainsFunc(name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return nil, "", nil
	}
	out, err := r.run(ctx, "", powershell, "-NoProfile", "-NonInteractive", "-Command", hypervScript(name))
	if notInstalled(err) {
		return nil, "", nil
	}
	if err != nil {
		msg := stderrOf(err)
		switch {
		case strings.Contains(msg, "is not recognized"):
			return nil, "", nil // no Hyper-V module on this edition
		case strings.Contains(msg, "required permission"):
			return nil, "Get-VM needs membership of the Hyper-V Administrators group (or an elevated shell)", nil
		}
		return nil, "Get-VM failed: " + firstLine(msg), nil
	}
	vms, err := parseHyperV(out)
	if err != nil {
		return nil, "", fmt.Errorf("%w: Hyper-V VM %s: Get-VM printed bad JSON: %w", ErrNoAddress, name, err)
	}
	switch len(vms) {
	case 0:
		return nil, "no VM named " + name, nil
	case 1:
	default:
		return nil, "", fmt.Errorf("%w: %d Hyper-V VMs are named %s; rename one", ErrAmbiguous, len(vms), name)
	}
	v := vms[0]
	if v.State != "Running" {
		return nil, "", fmt.Errorf("%w: Hyper-V VM %s is %s; start it with `Start-VM -Name '%s'`", ErrNoAddress, name, v.State, strings.ReplaceAll(v.Name, "'", "''"))
	}
	ips := usableIPs(v.IPAddresses)
	if len(ips) == 0 {
		return nil, "", fmt.Errorf("%w: Hyper-V VM %s runs but reports no IP address; the guest needs its integration services (Linux: hv_kvp_daemon, package hyperv-daemons or linux-cloud-tools), or put the VM in ssh_config", ErrNoAddress, name)
	}
	return &Candidate{Dest: bracket(ips[0]),
		Detail: fmt.Sprintf("Hyper-V VM %s: integration services report %s", name, ips[0])}, "", nil
}
