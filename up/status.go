package up

import (
	"os"
	"slices"

	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/hostpcsc"
)

// Status is the control.StatusV1 document of the control socket.
func (f *Supervisor) Status() control.StatusV1 {
	f.mu.Lock()
	s := control.StatusV1{
		Version:     control.StatusVersion,
		Mode:        control.ModeUp,
		PID:         os.Getpid(),
		Config:      f.opts.File,
		Started:     f.started.UTC(),
		Loaded:      f.loaded.UTC(),
		ReloadError: f.reloadErr,
		Host:        f.host.status(),
		Guests:      []control.GuestStatus{},
	}
	runs := slices.Clone(f.guests)
	f.mu.Unlock()
	for _, r := range runs {
		s.Guests = append(s.Guests, r.status())
	}
	return s
}

func (r *guestRun) status() control.GuestStatus {
	if r.conf.CCID != nil {
		return r.ccidStatus()
	}
	g := control.GuestStatus{
		Name:         r.conf.Name,
		Destination:  r.conf.Destination,
		VM:           r.conf.VM,
		Socket:       r.conf.Socket,
		HostProtocol: r.spec.host.daemon.Version.String(),
	}
	g.SetPolicy(r.conf.Readers, r.conf.Control == "deny", r.conf.Audit)
	if r.resolving {
		g.State, g.Since = string(forward.StateConnecting), r.at.UTC()
		return g
	}
	if r.fwd == nil {
		g.State, g.Since, g.LastError = string(forward.StateFailed), r.at.UTC(), r.err.Error()
		return g
	}
	t := r.spec.guest.Target
	g.Address, g.User = t.Addr(), t.User
	st := r.fwd.Status()
	g.State, g.Since = string(st.State), st.Since.UTC()
	if st.State == forward.StateBackoff {
		at := st.Retry.UTC()
		g.RetryAt = &at
	}
	if st.Socket != "" {
		g.Socket = st.Socket
	}
	if c := st.GuestClient; c != nil {
		g.GuestProtocol, g.GuestRelease = c.Version.String(), c.Release
	}
	g.OpenConnections, g.Connections, g.FailedConnections = st.Open, st.Connections, st.Failed
	g.BytesUp, g.BytesDown = st.BytesUp, st.BytesDown
	g.LastError = st.LastError
	return g
}

// status is the "host" of the status document.
func (h hostInfo) status() control.HostStatus {
	s := control.HostStatus{Protocol: h.daemon.Version.String(), Releases: h.daemon.Releases()}
	if h.src != nil {
		s.Backend, s.Source = hostpcsc.BackendOf(h.src), h.src.String()
	}
	if s.Backend == hostpcsc.PCSCDSocket {
		s.PCSCDSocket = h.socket
	}
	return s
}
