package hostcheck

import (
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// ProbeService asks the service manager about a service (SCardSvr,
// ssh-agent) with the least access that answers: SC_MANAGER_CONNECT and
// SERVICE_QUERY_STATUS|SERVICE_QUERY_CONFIG, which ordinary users have
// (mgr.Connect asks for SC_MANAGER_ALL_ACCESS, which they do not).
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
	s := &mgr.Service{Name: name, Handle: h}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return ServiceState{}
	}
	cfg, err := s.Config()
	if err != nil {
		return ServiceState{}
	}
	state := ServiceState{Known: true, Running: st.State == svc.Running, StartType: "manual"}
	switch cfg.StartType {
	case mgr.StartAutomatic:
		state.StartType = "auto"
	case mgr.StartDisabled:
		state.StartType = "disabled"
	}
	return state
}
