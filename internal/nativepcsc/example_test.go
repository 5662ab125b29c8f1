package nativepcsc_test

import (
	"context"
	"fmt"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
)

// A Source over the host's PC/SC (here a fake; scard.Open() in cardshare)
// answers a guest's CMD_VERSION in the guest's own protocol version.
func ExampleSource() {
	lib := scardtest.NewFake("Reader 00 00")
	src, err := nativepcsc.New(lib, nil)
	if err != nil {
		panic(err)
	}
	defer src.Close()
	fmt.Println(src)
	conn, err := src.Dial(context.Background())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	conn.Write(pcsc.AppendVersionRequest(nil, pcsc.V45))
	var buf [12]byte
	r, err := pcsc.ReadVersionReply(conn, &buf)
	fmt.Println(r.Version, r.Accepted(), err)
	// Output:
	// native PC/SC (fake PC/SC)
	// 4.5 true <nil>
}
