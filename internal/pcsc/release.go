package pcsc

import (
	"fmt"
	"strconv"
	"strings"
)

// Client describes a pcsc-lite client library as far as the protocol is
// concerned.
type Client struct {
	// Release is the pcsc-lite release, e.g. "2.3.3"; it may be empty when
	// only the protocol is known.
	Release string
	// Version is the protocol version the library proposes first.
	Version Version
	// Fallback is true for libraries of pcsc-lite 2.4.1 and later, which
	// retry CMD_VERSION with the daemon's version when they are rejected.
	Fallback bool
}

func (c Client) String() string {
	if c.Release != "" {
		return fmt.Sprintf("pcsc-lite %s (protocol %s)", c.Release, c.Version)
	}
	return fmt.Sprintf("protocol %s (%s)", c.Version, c.Version.Releases())
}

// ClientOfRelease maps a pcsc-lite release number, as a package manager
// prints it ("1.9.9-2", "2.3.3-1ubuntu1", "2.4.0_1,2"), to what its client
// library speaks. It reports false for a string that is not a release
// number.
func ClientOfRelease(release string) (Client, bool) {
	var n [3]int
	s := release
	for i := range n {
		j := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if j < 0 {
			j = len(s)
		}
		v, err := strconv.Atoi(s[:j])
		if err != nil {
			if i < 2 {
				return Client{}, false
			}
			break // "2.5" has no patch level
		}
		n[i] = v
		s = s[j:]
		if !strings.HasPrefix(s, ".") {
			break
		}
		s = s[1:]
	}
	rel := fmt.Sprintf("%d.%d.%d", n[0], n[1], n[2])
	at := func(a, b, c int) bool { // release >= a.b.c
		return n[0] > a || n[0] == a && (n[1] > b || n[1] == b && n[2] >= c)
	}
	c := Client{Release: rel}
	switch {
	case at(2, 5, 0):
		c.Version, c.Fallback = V46, true
	case at(2, 4, 1):
		c.Version, c.Fallback = V45, true
	case at(2, 3, 0):
		c.Version = V45
	case at(1, 8, 24):
		c.Version = V44
	case at(1, 8, 9):
		c.Version = V43
	case at(1, 6, 5):
		c.Version = Version{4, 2}
	default:
		return Client{}, false
	}
	return c, true
}

// Serves reports whether a connection from c to the daemon d completes the
// CMD_VERSION handshake, counting the fallback of newer clients.
func (d Daemon) Serves(c Client) bool {
	if d.Accepts(c.Version) {
		return true
	}
	// The retry proposes the daemon's own version (src/winscard_clnt.c,
	// connect_again), which the daemon accepts.
	return c.Fallback && d.Version.Major == 4 && d.Version.Minor >= 4
}
