//go:build unix

package bridge

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc/pcsctest"
)

// The byte exchanges captured from pcsc-lite 1.9.9 and 2.5.1 daemons
// (internal/pcsc/testdata/exchanges: reader arrays one record per write,
// the 4.4, 4.5 and 4.6 WAIT, signals, cancels) cross framedPipe unchanged,
// each piece written on its own, and nothing is held for bytes that do not
// come: every turn of the conversation arrives well within the hold limit.
func TestFramedCapturedExchanges(t *testing.T) {
	files, err := filepath.Glob("../pcsc/testdata/exchanges/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no exchanges: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			x := readExchange(t, file)
			const limit = 2 * time.Second
			e := startFramed(t, framed{version: x.Version, slots: x.Slots, hold: limit})
			for i := 0; i < len(x.Segments); {
				j := i
				var want []byte
				for j < len(x.Segments) && x.Segments[j].Client == x.Segments[i].Client {
					want = append(want, x.Segments[j].Bytes...)
					j++
				}
				from, to := e.daemon, e.client
				if x.Segments[i].Client {
					from, to = e.client, e.daemon
				}
				start := time.Now()
				var pcs [][]byte
				for _, s := range x.Segments[i:j] {
					pcs = append(pcs, s.Bytes)
				}
				go func() {
					for k, p := range pcs {
						if k > 0 {
							time.Sleep(time.Millisecond)
						}
						from.Write(p)
					}
				}()
				if got := readN(t, to, len(want)); !bytes.Equal(got, want) {
					t.Fatalf("segments %d–%d changed", i, j-1)
				}
				if d := time.Since(start); d > limit/2 {
					t.Fatalf("segments %d–%d took %v: held for bytes that were not coming", i, j-1, d)
				}
				i = j
			}
			e.tr.mu.Lock()
			lost := e.tr.lost
			e.tr.mu.Unlock()
			if lost {
				t.Errorf("framing gave up")
			}
		})
	}
}

// readExchange reads a file of internal/pcsc/testdata/exchanges.
func readExchange(t *testing.T, file string) pcsctest.Exchange {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	x, err := pcsctest.ParseExchange(string(src))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return x
}
