package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// setHostOS makes the resolvers behave as on goos for one test, with UTM
// installed (the fake runner decides what answers).
func setHostOS(t *testing.T, goos string) {
	old, oldUTM := hostOS, utmInstalled
	hostOS, utmInstalled = goos, func() bool { return true }
	t.Cleanup(func() { hostOS, utmInstalled = old, oldUTM })
}

// replies builds fakeTools replies from "command line|stdout file",
// "command line|!stderr file" or "command line|stdout file!stderr file"
// (a failure that printed on standard output, like vmrun).
func replies(lines ...string) map[string]reply {
	m := map[string]reply{}
	for _, l := range lines {
		i := strings.LastIndexByte(l, '|')
		cmd, files := l[:i], l[i+1:]
		out, errFile, _ := strings.Cut(files, "!")
		m[cmd] = reply{stdout: out, stderr: errFile}
	}
	return m
}

const devVMX = "/Users/alice/Virtual Machines.localized/devvm.vmwarevm/devvm.vmx"

var hypervCmd = powershell + " -NoProfile -NonInteractive -Command " + hypervScript("devvm")

// Each new manager alone, from recorded output.
func TestHostManagers(t *testing.T) {
	tests := []struct {
		name    string
		goos    string
		replies map[string]reply
		find    func(context.Context, *Resolver, string) (*Candidate, string, error)
		vm      string
		dest    string // want a candidate with this Dest
		why     string // want no candidate, with this reason ("" = silent)
		errText string // want ErrNoAddress with this text
	}{
		{name: "vmware by vmx name", find: findVMware, vm: "devvm",
			replies: replies("vmrun list|vmrun-list.txt", "vmrun getGuestIPAddress "+devVMX+"|vmrun-getip.txt"), dest: "192.168.79.128"},
		{name: "vmware by bundle name, case-insensitive on macOS", goos: "darwin", find: findVMware, vm: "windows 11",
			replies: replies("vmrun list|vmrun-list.txt", "vmrun getGuestIPAddress /Users/alice/Virtual Machines.localized/Windows 11.vmwarevm/Windows 11.vmx|vmrun-getip.txt"),
			dest:    "192.168.79.128"},
		{name: "vmware without tools", find: findVMware, vm: "devvm",
			replies: replies("vmrun list|vmrun-list.txt", "vmrun getGuestIPAddress "+devVMX+"|vmrun-notools.txt!vmrun-fail.stderr"),
			errText: "The VMware Tools are not running"},
		{name: "vmware not running", find: findVMware, vm: "devvm",
			replies: replies("vmrun list|vmrun-list-empty.txt"), why: "no running VM named devvm"},
		{name: "vmware not installed", find: findVMware, vm: "devvm"},

		{name: "parallels", find: findParallels, vm: "devvm",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), dest: "10.211.55.4"},
		{name: "parallels by uuid", find: findParallels, vm: "6C2E1A9F-5B7D-4E3A-9C1F-2D8E4B6A7C90",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), dest: "10.211.55.4"},
		{name: "parallels IPv4 after link-local", find: findParallels, vm: "dual",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), dest: "10.211.55.7"},
		{name: "parallels stopped", find: findParallels, vm: "Ubuntu 24.04",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), errText: `is stopped; start it with ` + "`prlctl start \"Ubuntu 24.04\"`"},
		{name: "parallels no tools", find: findParallels, vm: "notools",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), errText: "install Parallels Tools"},
		{name: "parallels unknown", find: findParallels, vm: "other",
			replies: replies("prlctl list --all --full --json|prlctl-list.json"), why: "no VM named other"},

		{name: "utm", find: findUTM, vm: "devvm",
			replies: replies("utmctl list|utmctl-list.txt", "utmctl ip-address A1B2C3D4-E5F6-4789-ABCD-0123456789AB|utmctl-ip.txt"), dest: "192.168.64.5"},
		{name: "utm name with spaces, stopped", find: findUTM, vm: "Debian 12 (Apple)",
			replies: replies("utmctl list|utmctl-list.txt"), errText: "is stopped; start it with `utmctl start \"Debian 12 (Apple)\"`"},
		{name: "utm without guest agent", find: findUTM, vm: "vz guest",
			replies: replies("utmctl list|utmctl-list.txt", "utmctl ip-address 7D6C5B4A-3928-4176-9584-736251403F2E|!utmctl-ip-noagent.stderr"),
			errText: "Operation not supported by the backend"},
		{name: "utm unknown", find: findUTM, vm: "other",
			replies: replies("utmctl list|utmctl-list.txt"), why: "no VM named other"},
		{name: "utm on macOS, running", goos: "darwin", find: findUTM, vm: "devvm",
			replies: replies("pgrep -x UTM|utm-pgrep.txt", "utmctl list|utmctl-list.txt", "utmctl ip-address A1B2C3D4-E5F6-4789-ABCD-0123456789AB|utmctl-ip.txt"),
			dest:    "192.168.64.5"},
		{name: "utm on macOS, closed: utmctl is not asked", goos: "darwin", find: findUTM, vm: "devvm",
			replies: replies("pgrep -x UTM|!vmrun-fail.stderr", "utmctl list|utmctl-list.txt"), why: "UTM is not running"},

		{name: "hyper-v", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|hyperv-running.json"), dest: "172.23.112.45"},
		{name: "hyper-v off", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|hyperv-off.json"), errText: "is Off; start it with `Start-VM -Name 'devvm'`"},
		{name: "hyper-v no address", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|hyperv-noip.json"), errText: "hv_kvp_daemon"},
		{name: "hyper-v unknown", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|hyperv-empty.txt"), why: "no VM named devvm"},
		{name: "hyper-v no permission", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|!hyperv-noperm.stderr"), why: "Hyper-V Administrators"},
		{name: "hyper-v module missing", goos: "windows", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|!hyperv-nomodule.stderr")},
		{name: "hyper-v only on Windows", goos: "linux", find: findHyperV, vm: "devvm",
			replies: replies(hypervCmd + "|hyperv-running.json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goos := tt.goos
			if goos == "" {
				goos = "linux"
			}
			setHostOS(t, goos)
			t.Setenv("HOME", t.TempDir()) // no VMware inventory
			r, _ := newResolver(t, tt.replies)
			c, why, err := tt.find(context.Background(), r, tt.vm)
			switch {
			case tt.errText != "":
				if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("err = %v, want ErrNoAddress with %q", err, tt.errText)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case tt.dest != "":
				if c == nil || c.Dest != tt.dest || c.Detail == "" {
					t.Errorf("candidate %+v, want dest %s", c, tt.dest)
				}
			default:
				if c != nil || !strings.Contains(why, tt.why) || (tt.why == "") != (why == "") {
					t.Errorf("candidate %+v, why %q; want none, why %q", c, why, tt.why)
				}
			}
		})
	}
}

// A closed UTM with the VM's bundle in its library: start it (and UTM).
func TestUTMClosed(t *testing.T) {
	setHostOS(t, "darwin")
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, "Library/Containers/com.utmapp.UTM/Data/Documents/devvm.utm"), 0o755)
	r, f := newResolver(t, replies("pgrep -x UTM|!vmrun-fail.stderr", "utmctl list|utmctl-list.txt"))
	_, _, err := findUTM(context.Background(), r, "devvm")
	if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), "(UTM is closed); start it with `utmctl start \"devvm\"`") {
		t.Errorf("err = %v", err)
	}
	if slices.Contains(f.calls, "utmctl list") {
		t.Errorf("utmctl was run (it would open UTM): %v", f.calls)
	}
	// Not installed: nothing is run at all.
	utmInstalled = func() bool { return false }
	f.calls = nil
	if c, why, err := findUTM(context.Background(), r, "devvm"); c != nil || why != "" || err != nil || len(f.calls) != 0 {
		t.Errorf("no UTM: %v %q %v, calls %v", c, why, err, f.calls)
	}
}

func TestHyperVTwoVMs(t *testing.T) {
	setHostOS(t, "windows")
	r, _ := newResolver(t, replies(hypervCmd+"|hyperv-two.json"))
	if _, _, err := findHyperV(context.Background(), r, "devvm"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("err = %v, want ErrAmbiguous", err)
	}
}

func TestHypervScriptQuoting(t *testing.T) {
	s := hypervScript("it's a VM")
	if !strings.Contains(s, "$_.Name -eq 'it''s a VM' }") {
		t.Errorf("script %s", s)
	}
	// A control character never reaches PowerShell.
	setHostOS(t, "windows")
	r, f := newResolver(t, replies(hypervCmd+"|hyperv-running.json"))
	if c, why, err := findHyperV(context.Background(), r, "dev\nvm"); c != nil || why != "" || err != nil || len(f.calls) != 0 {
		t.Errorf("name with a newline: %v %q %v, calls %v", c, why, err, f.calls)
	}
}

func TestVMwareInventory(t *testing.T) {
	b, _ := os.ReadFile("testdata/vmware-inventory.vmls")
	for name, want := range map[string]string{
		"Debian 12 dev": devVMX, // DisplayName
		"devvm":         devVMX, // file name
		"Windows 11":    "/Users/alice/Virtual Machines.localized/Windows 11.vmwarevm/Windows 11.vmx",
		"other":         "",
	} {
		if got := inventoryVMX(b, name); got != want {
			t.Errorf("inventoryVMX(%q) = %q, want %q", name, got, want)
		}
	}

	// A VM that is in the inventory but not running.
	setHostOS(t, "linux")
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".vmware"), 0o755)
	os.WriteFile(filepath.Join(home, ".vmware", "inventory.vmls"), b, 0o644)
	r, _ := newResolver(t, replies("vmrun list|vmrun-list-empty.txt"))
	_, _, err := findVMware(context.Background(), r, "Debian 12 dev")
	if !errors.Is(err, ErrNoAddress) || !strings.Contains(err.Error(), "is not running; start it with `vmrun start \""+devVMX+"\" nogui`") {
		t.Errorf("err = %v", err)
	}
}

func TestVMXDisplayName(t *testing.T) {
	dir := t.TempDir()
	vmx := filepath.Join(dir, "Debian.vmwarevm", "Debian.vmx")
	os.MkdirAll(filepath.Dir(vmx), 0o755)
	os.WriteFile(vmx, []byte(".encoding = \"UTF-8\"\nconfig.version = \"8\"\ndisplayName = \"build |22box|22\"\nguestOS = \"debian12-64\"\n"), 0o644)
	got := vmxNames(vmx)
	if want := []string{"Debian", "Debian", `build "box"`}; !slices.Equal(got, want) {
		t.Errorf("vmxNames = %q, want %q", got, want)
	}
	// Windows paths, as Workstation's vmrun list prints them.
	if got := vmxNames(`C:\Users\alice\Documents\Virtual Machines\dev\dev.vmx`); !slices.Equal(got, []string{"dev"}) {
		t.Errorf("windows path: %q", got)
	}
}

func TestParseUTMList(t *testing.T) {
	b, _ := os.ReadFile("testdata/utmctl-list.txt")
	got := parseUTMList(b)
	want := []utmVM{
		{"A1B2C3D4-E5F6-4789-ABCD-0123456789AB", "started", "devvm"},
		{"0F1E2D3C-4B5A-4968-8776-5A4B3C2D1E0F", "stopped", "Debian 12 (Apple)"},
		{"7D6C5B4A-3928-4176-9584-736251403F2E", "started", "vz guest"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestParseHyperV(t *testing.T) {
	for in, want := range map[string]int{
		"": 0, "\ufeff\r\n": 0,
		`{"Name":"a","State":"Running","IPAddresses":["1.2.3.4"]}`:    1,
		`[{"Name":"a","State":"Off"},{"Name":"a","State":"Running"}]`: 2,
	} {
		vms, err := parseHyperV([]byte(in))
		if err != nil || len(vms) != want {
			t.Errorf("parseHyperV(%q) = %v, %v; want %d VMs", in, vms, err, want)
		}
	}
	if _, err := parseHyperV([]byte("Get-VM : error")); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestUsableIPs(t *testing.T) {
	got := usableIPs([]string{"fe80::1", "::1", "2001:db8::5", "127.0.0.1", "0.0.0.0", "10.0.0.5/24", "junk", " 192.168.1.2 "})
	if want := []string{"10.0.0.5", "192.168.1.2", "2001:db8::5"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestToolLocations(t *testing.T) {
	env := map[string]string{"VBOX_MSI_INSTALL_PATH": `D:\Apps\VirtualBox\`, "SystemRoot": `C:\WINDOWS`}
	getenv := func(k string) string { return env[k] }
	for _, tt := range []struct {
		goos, name string
		want       []string
	}{
		{"windows", "VBoxManage", []string{`D:\Apps\VirtualBox\VBoxManage.exe`, `C:\Program Files\Oracle\VirtualBox\VBoxManage.exe`}},
		{"windows", "vmrun", []string{`C:\Program Files (x86)\VMware\VMware Workstation\vmrun.exe`, `C:\Program Files\VMware\VMware Workstation\vmrun.exe`}},
		{"windows", "powershell.exe", []string{`C:\WINDOWS\System32\WindowsPowerShell\v1.0\powershell.exe`}},
		{"darwin", "VBoxManage", []string{"/usr/local/bin/VBoxManage", "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"}},
		{"darwin", "vmrun", []string{"/Applications/VMware Fusion.app/Contents/Library/vmrun"}},
		{"darwin", "utmctl", []string{"/Applications/UTM.app/Contents/MacOS/utmctl"}},
		{"darwin", "prlctl", []string{"/usr/local/bin/prlctl", "/Applications/Parallels Desktop.app/Contents/MacOS/prlctl"}},
		{"linux", "VBoxManage", nil},
	} {
		if got := toolLocations(tt.goos, tt.name, getenv); !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: %q, want %q", tt.goos, tt.name, got, tt.want)
		}
	}
}

// fakeBin writes a shell script called name into dir that answers each
// command line in cases (args joined by spaces) with a testdata file on
// standard output, or, for "!file", on standard error with exit status 1;
// anything else fails like the tool would.
func fakeBin(t *testing.T, dir, name string, cases map[string]string) {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\ncase \"$*\" in\n")
	for args, file := range cases {
		if f, ok := strings.CutPrefix(file, "!"); ok {
			fmt.Fprintf(&b, "%s) /usr/bin/cat '%s/%s' >&2; exit 1;;\n", shellQuote(args), td, f)
		} else {
			fmt.Fprintf(&b, "%s) exec /usr/bin/cat '%s/%s';;\n", shellQuote(args), td, file)
		}
	}
	b.WriteString("*) echo \"Error: unexpected arguments: $*\" >&2; exit 255;;\nesac\n")
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// The resolvers through ExecRunner, with fake tools on PATH: what runs is
// the real command line, arguments and all.
func TestFakeToolsOnPath(t *testing.T) {
	if _, err := os.Stat("/usr/bin/cat"); err != nil {
		t.Skip("needs /usr/bin/cat")
	}
	setHostOS(t, "windows") // Hyper-V is asked only there
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	t.Setenv("HOME", t.TempDir())
	fakeBin(t, bin, "vmrun", map[string]string{"list": "vmrun-list.txt", "getGuestIPAddress " + devVMX: "vmrun-getip.txt"})
	fakeBin(t, bin, "prlctl", map[string]string{"list --all --full --json": "prlctl-list.json"})
	fakeBin(t, bin, "utmctl", map[string]string{"list": "utmctl-list.txt", "ip-address A1B2C3D4-E5F6-4789-ABCD-0123456789AB": "utmctl-ip.txt"})
	fakeBin(t, bin, "powershell.exe", map[string]string{"-NoProfile -NonInteractive -Command " + hypervScript("devvm"): "hyperv-running.json",
		"-NoProfile -NonInteractive -Command " + hypervScript("locked"): "!hyperv-noperm.stderr"})

	r := &Resolver{}
	ctx := context.Background()
	for _, tt := range []struct {
		find func(context.Context, *Resolver, string) (*Candidate, string, error)
		want string
	}{{findVMware, "192.168.79.128"}, {findParallels, "10.211.55.4"}, {findUTM, "192.168.64.5"}, {findHyperV, "172.23.112.45"}} {
		c, why, err := tt.find(ctx, r, "devvm")
		if err != nil || c == nil || c.Dest != tt.want {
			t.Errorf("candidate %+v, %q, %v; want %s", c, why, err, tt.want)
		}
	}
	if _, why, err := findHyperV(ctx, r, "locked"); err != nil || !strings.Contains(why, "Hyper-V Administrators") {
		t.Errorf("no permission: %q, %v", why, err)
	}

	// The whole order: four managers know devvm.
	_, _, err := r.Resolve(ctx, "devvm")
	if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), `"devvm" names 4 VMs`) {
		t.Errorf("Resolve: %v, want 4 candidates", err)
	}
	// A name nobody knows is a host name; each manager says why not.
	_, src, err := r.Resolve(ctx, "other")
	if err != nil || src.Kind != "host name" || !slices.Contains(src.Looked, "utm: no VM named other") ||
		!slices.Contains(src.Looked, "parallels: no VM named other") || !slices.Contains(src.Looked, "vmware: no running VM named other") {
		t.Errorf("Resolve(other): %+v, %v", src, err)
	}
}

// A tool outside PATH, where its installer put it: VBoxManage.exe under
// %VBOX_MSI_INSTALL_PATH% on Windows. On Linux the Windows path is a file
// name with a backslash, which is enough to run the lookup for real.
func TestLookToolFallback(t *testing.T) {
	if _, err := os.Stat("/usr/bin/cat"); err != nil {
		t.Skip("needs /usr/bin/cat")
	}
	setHostOS(t, "windows")
	dir := t.TempDir()
	t.Setenv("PATH", t.TempDir())
	t.Setenv("VBOX_MSI_INSTALL_PATH", dir)
	exe := dir + `\VBoxManage.exe`
	td, _ := filepath.Abs("testdata")
	os.WriteFile(exe, []byte("#!/bin/sh\nexec /usr/bin/cat '"+td+"/vbox-nat.txt'\n"), 0o755)
	if p, err := lookTool(vboxManage); err != nil || p != exe {
		t.Fatalf("lookTool = %q, %v; want %q", p, err, exe)
	}
	c, _, err := findVirtualBox(context.Background(), &Resolver{}, "devvm")
	if err != nil || c == nil || c.Dest != "127.0.0.1:2222" {
		t.Errorf("candidate %+v, %v", c, err)
	}
	os.Setenv("VBOX_MSI_INSTALL_PATH", "")
	if _, err := lookTool(vboxManage); err == nil {
		t.Error("found VBoxManage without VBOX_MSI_INSTALL_PATH")
	}
}

// The new tools' parsers take any output without panicking.
func FuzzHostToolOutput(f *testing.F) {
	for _, name := range []string{"vmrun-list.txt", "vmware-inventory.vmls", "prlctl-list.json", "utmctl-list.txt", "hyperv-two.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("displayName = \"a|2\"\nx = |zz|"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseVMX(b)
		inventoryVMX(b, "devvm")
		parseVMRunList(b)
		parseUTMList(b)
		if vms, err := parsePrlctlList(b); err == nil {
			for _, v := range vms {
				v.addresses()
			}
		}
		if vms, err := parseHyperV(b); err == nil {
			for _, v := range vms {
				usableIPs(v.IPAddresses)
			}
		}
	})
}
