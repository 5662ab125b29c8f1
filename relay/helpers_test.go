package relay_test

import (
	"net"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

func versionExchange(t *testing.T, c net.Conn, v pcsc.Version) pcsc.VersionReply {
	t.Helper()
	if _, err := c.Write(pcsc.AppendVersionRequest(nil, v)); err != nil {
		t.Fatal(err)
	}
	var buf [12]byte
	r, err := pcsc.ReadVersionReply(c, &buf)
	if err != nil {
		t.Fatalf("read version reply: %v", err)
	}
	return r
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
