//go:build !windows

package hostcheck

// ProbeService knows no services outside Windows.
func ProbeService(string) ServiceState { return ServiceState{} }
