package nativepcsc_test

import (
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/scard/scardtest"
)

var fuzzSource struct {
	once sync.Once
	f    *scardtest.Fake
	src  *nativepcsc.Source
}

func hexMsg(s string) []byte {
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "").Replace(s))
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzGuest feeds hostile guest input to the daemon end, over a Fake
// library with a card: it must not panic, must close only that
// connection (a fresh one is served right after), and allocates nothing
// from lengths on the wire (transmit buffers come from a fixed pool).
func FuzzGuest(f *testing.F) {
	v44 := "0c000000 11000000 | 04000000 04000000 00000000"
	v46 := "0c000000 11000000 | 04000000 06000000 00000000"
	for _, s := range []string{
		v44,
		v44 + "0c000000 01000000 | 02000000 00000000 00000000" + "00000000 12000000",
		v46 + "0c000000 01000000 | 02000000 00000000 00000000" + "00000000 16000000 00000000 17000000 00000000 13000000 00000000 14000000",
		"08000000 0d000000 | 75314063 00000000",
		v44 + "00000000 13000000 00000000 14000000 00000000 14000000",
		v44 + "0c000000 01000000 | 02000000 00000000 00000000" +
			"98000000 04000000 | 01000000" + hex.EncodeToString([]byte("Fake Reader 00 00")) + strings.Repeat("00", 111) + "02000000 03000000 00000000 00000000 00000000",
		v44 + "20000000 09000000 | 4cf54f5a 01000000 10000000 05000000 00000000 00000000 02010000 00000000 00a4040000",
		v44 + "20000000 09000000 | 4cf54f5a 01000000 10000000 ffffffff 00000000 00000000 02010000 00000000",
		v44 + "18010000 0f000000 | 4cf54f5a 03030900" + strings.Repeat("00", 264) + "09010000 00000000",
		"ffffff7f 09000000",
		v46 + "10000000 11000000 | 04000000 04000000 00000000 00000000",
	} {
		f.Add(hexMsg(s))
	}
	fuzzSource.once.Do(func() {
		fuzzSource.f = scardtest.NewFake(fakeReader, fakeReader2)
		fuzzSource.f.Insert(fakeReader, fakeATR)
		fuzzSource.src, _ = nativepcsc.New(fuzzSource.f, &nativepcsc.Config{MinPoll: 5 * time.Millisecond, WriteTimeout: time.Second})
	})
	src := fuzzSource.src
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := src.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			c.Write(in)
			if uc, ok := c.(*net.UnixConn); ok {
				uc.CloseWrite()
			}
		}()
		// The daemon end answers and closes; a reset (it closed with
		// input unread, as pcscd does) is an end too. Only the deadline
		// means it hung.
		if _, err := io.Copy(io.Discard, io.LimitReader(c, 1<<22)); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the daemon end did not finish with the input: %v", err)
		}
		// The daemon still serves others.
		r := dial(t, src)
		if got := r.version(pcsc.V45); got.RV != 0 {
			t.Fatalf("after the input: %+v", got)
		}
		r.establish()
	})
}
