package pcsctest

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// Exchange is a connection recorded from a real daemon, as the files of
// internal/pcsc/testdata/exchanges hold it (the format is in its README).
type Exchange struct {
	Version  pcsc.Version // what the connection speaks after CMD_VERSION
	Slots    int          // records of a CMD_GET_READERS_STATE reply
	Segments []Segment    // in the order they crossed the wire
}

// Segment is one write, of the client or of the daemon.
type Segment struct {
	Client bool
	Bytes  []byte
}

// ParseExchange reads an exchange file's text.
func ParseExchange(s string) (Exchange, error) {
	x := Exchange{Slots: pcsc.DefaultSlots}
	for i, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		fail := func(err error) (Exchange, error) { return x, fmt.Errorf("line %d: %w", i+1, err) }
		switch {
		case f[0] == "version" && len(f) == 2:
			var minor uint32
			if _, err := fmt.Sscanf(f[1], "4.%d", &minor); err != nil {
				return fail(err)
			}
			x.Version = pcsc.Version{Major: 4, Minor: minor}
		case f[0] == "slots" && len(f) == 2:
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return fail(err)
			}
			x.Slots = n
		case f[0][0] == '>' || f[0][0] == '<':
			times := 1
			if rest, ok := strings.CutPrefix(f[0][1:], "*"); ok {
				n, err := strconv.Atoi(rest)
				if err != nil {
					return fail(err)
				}
				times = n
			}
			b, err := ParseBytes(strings.TrimSpace(line[len(f[0]):]))
			if err != nil {
				return fail(err)
			}
			for range times {
				x.Segments = append(x.Segments, Segment{f[0][0] == '>', b})
			}
		default:
			return fail(fmt.Errorf("cannot parse %q", line))
		}
	}
	return x, nil
}

// ParseBytes reads BYTES as the exchange files write them: hex groups,
// zero*N and "text", with | as a separator that means nothing.
func ParseBytes(s string) ([]byte, error) {
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
