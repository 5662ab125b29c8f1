package hostcheck

import "testing"

// ProbeService with an ordinary user's rights: an unknown service is not
// Known; the RPC service (RpcSs) runs on every Windows and under Wine.
func TestProbeService(t *testing.T) {
	if s := ProbeService("cardshare-no-such-service"); s.Known {
		t.Errorf("unknown service: %+v", s)
	}
	s := ProbeService("RpcSs")
	t.Logf("RpcSs: %+v", s)
	if !s.Known || !s.Running || s.StartType == "disabled" {
		t.Errorf("RpcSs: %+v, want running and not disabled", s)
	}
	t.Logf("SCardSvr: %+v", ProbeService("SCardSvr"))
	t.Logf("ssh-agent: %+v", ProbeService("ssh-agent"))
}
