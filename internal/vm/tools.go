package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// hostOS is runtime.GOOS; tests set it to exercise another host's rules
// (Hyper-V is asked only on Windows, tool locations differ per OS).
var hostOS = runtime.GOOS

// lookTool finds a VM manager's program: on PATH first, else where its
// installer puts it when it does not add it to PATH (toolLocations).
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, c := range toolLocations(hostOS, name, os.Getenv) {
		if fi, serr := os.Stat(c); serr == nil && !fi.IsDir() {
			return c, nil
		}
	}
	return "", err
}

// toolLocations lists where the installers of VM managers put their
// command line tools outside PATH, for goos:
//
//   - VirtualBox on Windows: the MSI installer sets VBOX_MSI_INSTALL_PATH
//     (e.g. C:\Program Files\Oracle\VirtualBox\) and does not touch PATH;
//     on macOS the package links /usr/local/bin/VBoxManage, and the binary
//     itself is in VirtualBox.app/Contents/MacOS (VirtualBox manual,
//     "Installing on macOS Hosts" and "Installing on Windows Hosts").
//   - VMware: Fusion keeps vmrun in "VMware Fusion.app/Contents/Library";
//     Workstation installs vmrun.exe in "C:\Program Files (x86)\VMware\VMware
//     Workstation" (VMware, "Using vmrun to Control Virtual Machines").
//   - Parallels Desktop links /usr/local/bin/prlctl; the binary lives in
//     "Parallels Desktop.app/Contents/MacOS" (Parallels Desktop Command-Line
//     Reference).
//   - UTM ships utmctl inside UTM.app/Contents/MacOS and asks users to link
//     it themselves (UTM docs, "Scripting / utmctl").
//   - Windows PowerShell 5.1 is always in
//     %SystemRoot%\System32\WindowsPowerShell\v1.0.
func toolLocations(goos, name string, getenv func(string) string) []string {
	name = strings.TrimSuffix(name, ".exe")
	switch goos {
	case "windows":
		pf := getenv("ProgramFiles")
		if pf == "" {
			pf = `C:\Program Files`
		}
		pf86 := getenv("ProgramFiles(x86)")
		if pf86 == "" {
			pf86 = `C:\Program Files (x86)`
		}
		sysRoot := getenv("SystemRoot")
		if sysRoot == "" {
			sysRoot = `C:\Windows`
		}
		switch name {
		case vboxManage:
			var l []string
			if d := getenv("VBOX_MSI_INSTALL_PATH"); d != "" {
				l = append(l, winJoin(d, "VBoxManage.exe"))
			}
			if d := getenv("VBOX_INSTALL_PATH"); d != "" {
				l = append(l, winJoin(d, "VBoxManage.exe"))
			}
			return append(l, winJoin(pf, `Oracle\VirtualBox\VBoxManage.exe`))
		case vmrun:
			return []string{winJoin(pf86, `VMware\VMware Workstation\vmrun.exe`), winJoin(pf, `VMware\VMware Workstation\vmrun.exe`)}
		case strings.TrimSuffix(powershell, ".exe"):
			return []string{winJoin(sysRoot, `System32\WindowsPowerShell\v1.0\powershell.exe`)}
		}
	case "darwin":
		switch name {
		case vboxManage:
			return []string{"/usr/local/bin/VBoxManage", "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"}
		case vmrun:
			return []string{"/Applications/VMware Fusion.app/Contents/Library/vmrun"}
		case prlctl:
			return []string{"/usr/local/bin/prlctl", "/Applications/Parallels Desktop.app/Contents/MacOS/prlctl"}
		case utmctl:
			return []string{"/Applications/UTM.app/Contents/MacOS/utmctl"}
		}
	case "linux":
		if name == vmrun {
			return []string{"/usr/bin/vmrun", "/usr/lib/vmware/bin/vmrun"}
		}
	}
	return nil
}

// winJoin joins Windows path elements whatever the OS that runs the code
// (filepath.Join would use '/' in tests on Linux).
func winJoin(dir, rest string) string {
	return strings.TrimRight(dir, `\/`) + `\` + rest
}

// sameFileName compares base names the way the host's file system does:
// without case on macOS and Windows (their default file systems ignore it).
func sameFileName(a, b string) bool {
	if hostOS == "darwin" || hostOS == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// baseName is filepath.Base for paths of either OS.
func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return filepath.Base(p)
}
