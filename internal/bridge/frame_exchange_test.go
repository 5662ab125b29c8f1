//go:build unix

package bridge

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
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
			e := startFramed(t, framed{version: x.version, slots: x.slots, hold: limit})
			for i := 0; i < len(x.segs); {
				j := i
				var want []byte
				for j < len(x.segs) && x.segs[j].client == x.segs[i].client {
					want = append(want, x.segs[j].b...)
					j++
				}
				from, to := e.daemon, e.client
				if x.segs[i].client {
					from, to = e.client, e.daemon
				}
				start := time.Now()
				var pcs [][]byte
				for _, s := range x.segs[i:j] {
					pcs = append(pcs, s.b)
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

type exchangeSeg struct {
	client bool
	b      []byte
}

type capturedExchange struct {
	version pcsc.Version
	slots   int
	segs    []exchangeSeg
}

// readExchange parses the format of internal/pcsc/testdata/exchanges/README.
func readExchange(t *testing.T, file string) capturedExchange {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	x := capturedExchange{slots: pcsc.DefaultSlots}
	for i, line := range strings.Split(string(src), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		fail := func(err error) { t.Fatalf("%s:%d: %v", file, i+1, err) }
		switch {
		case f[0] == "version" && len(f) == 2:
			var minor uint32
			if _, err := fmt.Sscanf(f[1], "4.%d", &minor); err != nil {
				fail(err)
			}
			x.version = pcsc.Version{Major: 4, Minor: minor}
		case f[0] == "slots" && len(f) == 2:
			n, err := strconv.Atoi(f[1])
			if err != nil {
				fail(err)
			}
			x.slots = n
		case f[0][0] == '>' || f[0][0] == '<':
			times := 1
			if rest, ok := strings.CutPrefix(f[0][1:], "*"); ok {
				if times, err = strconv.Atoi(rest); err != nil {
					fail(err)
				}
			}
			b, err := exchangeBytes(strings.TrimSpace(line[len(f[0]):]))
			if err != nil {
				fail(err)
			}
			for range times {
				x.segs = append(x.segs, exchangeSeg{f[0][0] == '>', b})
			}
		default:
			fail(fmt.Errorf("cannot parse %q", line))
		}
	}
	return x
}

func exchangeBytes(s string) ([]byte, error) {
	var b []byte
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t|")
		switch {
		case s == "":
		case s[0] == '"':
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			b = append(b, s[1:1+end]...)
			s = s[end+2:]
		default:
			tok, rest, _ := strings.Cut(s, " ")
			s = rest
			if n, ok := strings.CutPrefix(tok, "zero*"); ok {
				k, err := strconv.Atoi(n)
				if err != nil {
					return nil, err
				}
				b = append(b, make([]byte, k)...)
				continue
			}
			h, err := hex.DecodeString(tok)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", tok, err)
			}
			b = append(b, h...)
		}
	}
	return b, nil
}
