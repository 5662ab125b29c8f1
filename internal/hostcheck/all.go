package hostcheck

import (
	"context"
	"os"

	"github.com/cardshare/cardshare/internal/sshpaths"
)

// Inputs are everything the checks look at. Gather fills them for this
// host; tests make them up.
type Inputs struct {
	GOOS string
	// PCSC is what the native backend's probe returned (the caller's: this
	// package does not open PC/SC itself).
	PCSC PCSC
	// SmartCardService is SCardSvr's state (Windows).
	SmartCardService ServiceState
	Agent            AgentProbe
	SSH              sshpaths.Program
	SSHErr           error
	// MacOSVersion is sw_vers's product version (macOS).
	MacOSVersion string
	// WSL is set when WSL is installed (Windows); WSLConfig is
	// %USERPROFILE%\.wslconfig, nil when there is none.
	WSL       bool
	WSLConfig []byte
	// RelayPort is the port relay serve listens on, for the WSL advice.
	RelayPort int
}

// Gather probes this host for the checks; pcsc is the native backend's
// answer, which the caller probes.
func Gather(ctx context.Context, h sshpaths.Host, pcsc PCSC, relayPort int) Inputs {
	in := Inputs{GOOS: h.GOOS, PCSC: pcsc, RelayPort: relayPort}
	in.Agent = ProbeAgent(ctx, h)
	in.SSH, in.SSHErr = sshpaths.FindSSH(h)
	switch h.GOOS {
	case "darwin":
		in.MacOSVersion = ProbeMacOSVersion(ctx)
	case "windows":
		in.SmartCardService = ProbeService("SCardSvr")
		root := os.Getenv("SystemRoot")
		if root == "" {
			root = `C:\Windows`
		}
		if _, err := os.Stat(root + `\System32\wsl.exe`); err == nil {
			in.WSL = true
			in.WSLConfig, _ = os.ReadFile(h.Home + `\.wslconfig`)
		}
	}
	return in
}

// Checks runs the checks that apply to in.GOOS, in the order doctor
// prints them: PC/SC service, readers, macOS version, ssh program,
// ssh-agent, WSL2.
func Checks(in Inputs) []Result {
	rs := []Result{SmartCardService(in.GOOS, in.PCSC, in.SmartCardService), Readers(in.GOOS, in.PCSC)}
	if in.GOOS == "darwin" {
		rs = append(rs, MacOSVersion(in.MacOSVersion))
	}
	rs = append(rs, SSHProgram(in.GOOS, in.SSH, in.SSHErr), Agent(in.GOOS, in.Agent))
	if in.GOOS == "windows" && in.WSL {
		port := in.RelayPort
		if port == 0 {
			port = 7743
		}
		rs = append(rs, WSL(in.WSLConfig, port))
	}
	return rs
}
