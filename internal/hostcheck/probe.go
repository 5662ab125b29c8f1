package hostcheck

import (
	"context"
	"os/exec"
	"strings"
)

// ProbeMacOSVersion returns the macOS product version ("14.2.1") from
// sw_vers, or "" when there is none.
func ProbeMacOSVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "/usr/bin/sw_vers", "-productVersion").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
