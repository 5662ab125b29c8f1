package hostcheck

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/windows"
)

// ProbeService asks the service manager about a service (SCardSvr,
// ssh-agent) with the least access that answers: SC_MANAGER_CONNECT and
// SERVICE_QUERY_STATUS|SERVICE_QUERY_CONFIG, which ordinary users have
// (x/sys/windows/svc/mgr.Connect asks for SC_MANAGER_ALL_ACCESS, which
// they do not). It reads only QueryServiceConfig's start type: mgr's
// Service.Config also asks QueryServiceConfig2 for more, which Wine
// refuses.
func ProbeService(name string) ServiceState {
	m, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return ServiceState{}
	}
	defer windows.CloseServiceHandle(m)
	n, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return ServiceState{}
	}
	h, err := windows.OpenService(m, n, windows.SERVICE_QUERY_STATUS|windows.SERVICE_QUERY_CONFIG)
	if err != nil {
		return ServiceState{}
	}
	defer windows.CloseServiceHandle(h)
	var st windows.SERVICE_STATUS
	if err := windows.QueryServiceStatus(h, &st); err != nil {
		return ServiceState{}
	}
	start, ok := startType(h)
	if !ok {
		return ServiceState{}
	}
	return ServiceState{Known: true, Running: st.CurrentState == windows.SERVICE_RUNNING, StartType: start}
}

func startType(h windows.Handle) (string, bool) {
	size := uint32(1024)
	for range 3 {
		buf := make([]byte, size)
		cfg := (*windows.QUERY_SERVICE_CONFIG)(unsafe.Pointer(&buf[0]))
		err := windows.QueryServiceConfig(h, cfg, size, &size)
		if errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER) {
			continue
		}
		if err != nil {
			return "", false
		}
		switch cfg.StartType {
		case windows.SERVICE_AUTO_START, windows.SERVICE_BOOT_START, windows.SERVICE_SYSTEM_START:
			return "auto", true
		case windows.SERVICE_DISABLED:
			return "disabled", true
		}
		return "manual", true
	}
	return "", false
}
