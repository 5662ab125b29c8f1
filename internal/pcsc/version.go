package pcsc

import (
	"errors"
	"fmt"
)

// Version is a pcsc-lite wire protocol version (PROTOCOL_VERSION_MAJOR and
// _MINOR in src/winscard_msg.h). It is not the pcsc-lite release number.
type Version struct {
	Major, Minor uint32
}

// Protocol versions cardshare knows.
var (
	V43 = Version{4, 3}
	V44 = Version{4, 4}
	V45 = Version{4, 5}
	V46 = Version{4, 6}
)

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Releases names the pcsc-lite releases whose client library and daemon speak
// v, from the PROTOCOL_VERSION_* history of the release tags.
func (v Version) Releases() string {
	switch v {
	case V43:
		return "pcsc-lite 1.8.9–1.8.23"
	case V44:
		return "pcsc-lite 1.8.24–2.2.3"
	case V45:
		return "pcsc-lite 2.3.0–2.4.1"
	case V46:
		return "pcsc-lite 2.5.x"
	}
	if v.Major == 4 && v.Minor < 3 {
		return "pcsc-lite 1.8.8 or older"
	}
	return "an unknown pcsc-lite release"
}

// Daemon describes a pcscd as far as the protocol is concerned.
type Daemon struct {
	// Version is the daemon's own protocol version.
	Version Version
	// Lenient is true for daemons that accept clients of older protocol
	// versions: pcsc-lite 2.4.1 (4.5 accepting 4.4) and 2.5.x (4.6 accepting
	// 4.4 and 4.5). 2.3.0–2.4.0 speak 4.5 strictly and reject 4.4 clients.
	Lenient bool
	// Readers is the number of reader records the daemon sends for
	// CMD_GET_READERS_STATE: its PCSCLITE_MAX_READERS_CONTEXTS, 16
	// upstream but 48 in Fedora's builds and 32 in RHEL 7's, which the
	// protocol version does not tell (src/readerfactory.c:68 and
	// src/winscard_svc.c:420-431 in 2.2.3). Zero means not
	// measured.
	Readers int
}

// Releases names the pcsc-lite releases of the daemon.
func (d Daemon) Releases() string {
	if d.Version == V45 {
		if d.Lenient {
			return "pcsc-lite 2.4.1"
		}
		return "pcsc-lite 2.3.0–2.4.0"
	}
	return d.Version.Releases()
}

func (d Daemon) String() string {
	if d.Version == V45 && !d.Lenient {
		return fmt.Sprintf("protocol %s strict (%s)", d.Version, d.Releases())
	}
	return fmt.Sprintf("protocol %s (%s)", d.Version, d.Releases())
}

// Accepts reports whether the daemon accepts a client that proposes v in
// CMD_VERSION (the CMD_VERSION handler in src/winscard_svc.c of each release).
func (d Daemon) Accepts(v Version) bool {
	if v == d.Version {
		return true
	}
	if !d.Lenient {
		return false
	}
	if d.Version == V45 { // 2.4.1 rejects only minors below 4
		return v.Minor >= 4
	}
	return v.Major == 4 && v.Minor >= 4 && v.Minor < d.Version.Minor
}

// Translates reports whether cardshare's proxy serves a client proposing v
// to d by translation: d would reject v, and both speak a protocol the
// proxy knows (4.4, 4.5 or 4.6). Such a client works through cardshare
// although it would not work with d directly.
func (d Daemon) Translates(v Version) bool {
	return d.Version.Known() && v.Known() && !d.Accepts(v)
}

// Mismatch explains why a client that proposed client was rejected by d, and
// how to fix it. It is returned by the relay when a daemon says no, so the
// host log names both sides instead of the guest's bare "Service was stopped".
type Mismatch struct {
	Client Version
	Daemon Daemon
}

func (m *Mismatch) Error() string {
	return fmt.Sprintf("pcsc: guest libpcsclite speaks protocol %s (%s), host pcscd speaks %s and rejects it; the guest sees \"Service was stopped\"",
		m.Client, m.Client.Releases(), m.Daemon)
}

// Hint says what the user can do about the mismatch.
func (m *Mismatch) Hint() string {
	c, d := m.Client, m.Daemon.Version
	switch {
	case c.Minor < d.Minor:
		return fmt.Sprintf("upgrade the guest's libpcsclite to 2.4.1 or later (it falls back to older daemons), or the host's pcscd to 2.4.1 or later (it accepts older clients); both ends on protocol %s works too", c)
	case c.Minor > d.Minor:
		return fmt.Sprintf("upgrade the host's pcscd to 2.4.1 or later (it accepts older clients), or the guest's libpcsclite to 2.4.1 or later (it falls back to protocol %s)", d)
	}
	return "install matching pcsc-lite versions in guest and host"
}

// ErrUnknownProtocol means the proxy cannot read a connection's protocol:
// a policy or an audit log cannot be applied to it, so it is refused
// rather than relayed as bytes.
var ErrUnknownProtocol = errors.New("pcsc: protocol version unknown to cardshare's proxy")

// UnknownDaemonError is CheckPolicyDaemon's refusal.
type UnknownDaemonError struct {
	Daemon Daemon
}

func (e *UnknownDaemonError) Error() string {
	return fmt.Sprintf("%v: host pcscd speaks %s, and a reader policy or audit log needs 4.4, 4.5 or 4.6", ErrUnknownProtocol, e.Daemon)
}

func (e *UnknownDaemonError) Unwrap() error { return ErrUnknownProtocol }

// Hint says what the user can do about it.
func (e *UnknownDaemonError) Hint() string {
	if v := e.Daemon.Version; v.Major == 4 && v.Minor < 4 {
		return "upgrade the host's pcsc-lite to 1.8.24 or later, or serve the guests without a reader policy and audit log"
	}
	return "this pcsc-lite is newer than this cardshare: upgrade cardshare, or serve the guests without a reader policy and audit log"
}

// CheckPolicyDaemon returns an *UnknownDaemonError when the proxy could not
// apply a reader policy or an audit log to the connections of the daemon
// d, as probed: its protocol is not 4.4, 4.5 or 4.6. A zero d (not probed)
// passes: each connection is then checked on its own (Dialect.Validate).
// Call it at start when a policy or audit log is configured.
func CheckPolicyDaemon(d Daemon) error {
	if d.Version == (Version{}) || d.Version.Known() {
		return nil
	}
	return &UnknownDaemonError{Daemon: d}
}
