package config

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cardshare/cardshare/internal/unixsock"
)

// FormatVersion is the file format this package reads.
const FormatVersion = 1

// Config is the content of a configuration file. The zero value is a valid
// configuration with default host options and no guests.
type Config struct {
	// File is the file the configuration was read from; errors and
	// warnings name it. Empty for a Config built in code.
	File string

	// Version is the file format version, so that a later format can be
	// told apart from this one. Zero means FormatVersion.
	Version int

	// Host holds the options of the host side, shared by every guest.
	Host Host

	// Guests are the guests to expose, in file order.
	Guests []Guest

	// lines maps a key path ("host.keepalive", "guests.2.socket") to its
	// line in File, so that Validate can point at it. Nil for a Config
	// built in code.
	lines map[string]int
}

// Host holds the host-side options.
type Host struct {
	// Backend is where the host's PC/SC comes from: "socket" (the pcscd
	// socket, PCSCDSocket), "native" (the system's PC/SC API) or "auto"
	// (the best this build has; today the socket). Empty means "auto".
	Backend string

	// PCSCDSocket is the host pcscd socket to relay to. Empty means what
	// the host's libpcsclite would use: $PCSCLITE_CSOCK_NAME, else
	// /run/pcscd/pcscd.comm.
	PCSCDSocket string

	// Keepalive is how often each guest is checked for being alive, so a
	// vanished guest (paused VM, network gone) is noticed and reconnected
	// instead of hanging. Zero means 5 s.
	Keepalive time.Duration

	// LogLevel is the least severe log level written: "debug", "info",
	// "warn" or "error". Debug adds one event per guest connection, with
	// byte counts but never card data. Empty means "info".
	LogLevel string

	// LogFormat is "text" (logfmt) or "json". Empty means "text".
	LogFormat string

	// SSHConfig is the ssh_config file used for every guest, as with
	// ssh -F; it replaces ~/.ssh/config and /etc/ssh/ssh_config. Empty
	// means ssh's own defaults.
	SSHConfig string

	// AcceptNew records the host key of a guest that is not yet in
	// known_hosts, as StrictHostKeyChecking accept-new does. A changed key
	// is refused all the same. False means unknown guests are refused.
	AcceptNew bool

	// MaxGuestConns caps the pcsc-lite connections that one guest holds
	// open on the host pcscd at once (libpcsclite opens one per
	// context); more are refused as a pcscd that cannot serve refuses
	// them ("Service not available"), so that one guest cannot take
	// every client slot pcscd has (about 200). Read at start. Zero
	// means 32.
	MaxGuestConns int

	// MaxConns caps those of all guests together, to keep room in pcscd
	// for the host's own programs. Read at start. Zero means 150.
	MaxConns int
}

// MaxConnsLimit bounds host.max_conns and host.max_guest_conns: pcscd
// serves about 200 clients in all (PCSC_MAX_CONTEXT_THREADS), and the host
// needs some of them.
const MaxConnsLimit = 190

// Guest is one guest to expose the host pcscd to.
type Guest struct {
	// Name identifies the guest in logs, status output and reloads, and
	// must be unique in the file. Empty means Destination, or VM.
	Name string

	// Destination is where to connect: an ssh_config Host alias or
	// [user@]host[:port]. Exactly one of Destination and VM is set.
	Destination string

	// VM names a virtual machine whose SSH address cardshare looks up as
	// `cardshare resolve` does: an ssh_config alias of that name, else the
	// VM managers (VirtualBox, libvirt, Vagrant, Lima, VMware, Parallels,
	// UTM, Hyper-V), else a host name.
	VM string

	// Socket is the absolute path of the forwarded socket in the guest.
	// Empty means a private default of the login user:
	// $XDG_RUNTIME_DIR/cardshare/pcscd.comm, else ~/.cardshare/pcscd.comm.
	Socket string

	// SetupGuest points the guest user's programs at the forwarded socket
	// (PCSCLITE_CSOCK_NAME in the shell profile and environment.d) over SSH
	// once the forward is up, as `cardshare guest setup` does. False leaves
	// the guest's files untouched.
	SetupGuest bool

	// Readers, Control and Audit are the guest's reader policy, which
	// the relay enforces on every connection of the guest.
	//
	// Readers lists patterns (path.Match syntax: * ? [...]) of the host
	// readers the guest may see and connect to; the others are hidden
	// from every reader list and state, and connecting to one fails with
	// SCARD_E_UNKNOWN_READER. Empty means every reader.
	Readers []string
	// Control is "allow" or "deny": whether the guest may send
	// SCardControl (reader escape) commands; denied ones fail with
	// SCARD_E_UNSUPPORTED_FEATURE. Empty means "allow".
	Control string
	// Audit logs one line per PC/SC call of the guest (command, reader,
	// return code, sizes; never payload bytes). False logs none.
	Audit bool

	// CCID, when set, makes this a QEMU guest without guest software:
	// `up` passes host readers to it as QEMU's emulated USB CCID reader
	// (as `cardshare qemu attach` does) instead of an SSH forward. VM is
	// then a libvirt domain whose passthrough smartcards give the chardevs,
	// unless CCID.Chardevs names them. Nil: an SSH guest.
	CCID *CCID

	// Line is the line of the guest's entry in the file; 0 when unknown.
	Line int
}

// CCID is a guest's ccid: mapping, the flags of `cardshare qemu attach`.
type CCID struct {
	// Reader is a glob (path.Match) of the host readers to pass, such as
	// "Yubico YubiKey*"; "*" passes every reader. Required.
	Reader string
	// Chardevs are the ccid-card-passthru chardevs, "unix:PATH" or
	// "tcp:HOST:PORT", one per emulated reader. Empty means those of the
	// libvirt domain VM.
	Chardevs []string
	// Listen: cardshare listens on Chardevs and QEMU connects. False:
	// cardshare dials QEMU's.
	Listen bool
	// Exclusive takes the card exclusively while it is present. False
	// shares it, in transactions.
	Exclusive bool
	// T1 passes T=1-only ATRs unchanged (usb-ccid,x-t1-support=on). False
	// adds T=0 for QEMU 7.2.
	T1 bool
}

// Target is what the guest's address is looked up by: Destination, or VM.
func (g *Guest) Target() string {
	if g.Destination != "" {
		return g.Destination
	}
	return g.VM
}

// label is the guest's name as Validate and Warnings refer to it.
func (g *Guest) label() string {
	if g.Name != "" {
		return g.Name
	}
	return g.Target()
}

// Default returns the configuration used when a key is absent: every host
// option at its default and no guests.
func Default() *Config {
	return &Config{
		Version: FormatVersion,
		Host: Host{
			Keepalive: 5 * time.Second,
			LogLevel:  "info",
			LogFormat: "text",
		},
	}
}

// Keepalive bounds: shorter would load the guests' sshd for nothing,
// longer would leave a dead guest unnoticed for too long.
const (
	minKeepalive = time.Second
	maxKeepalive = time.Hour
)

// Error is a problem in a configuration, at a line of its file.
type Error struct {
	File string // "" for a Config built in code
	Line int    // 0 when unknown
	Msg  string // what is wrong
	Hint string // how to fix it; may be empty
}

func (e *Error) Error() string {
	switch {
	case e.File == "":
		return "config: " + e.Msg
	case e.Line == 0:
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Validate checks the configuration and returns every problem found, each
// an *Error, joined with errors.Join; nil means the configuration is usable.
// It does not look at the network or at other files.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.check()
	return errors.Join(v.errs...)
}

type validator struct {
	c    *Config
	errs []error
}

func (v *validator) fail(key string, fallback int, hint, format string, args ...any) {
	line := v.c.lines[key]
	if line == 0 {
		line = fallback
	}
	v.errs = append(v.errs, &Error{File: v.c.File, Line: line, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (v *validator) check() {
	c := v.c
	if c.Version != 0 && c.Version != FormatVersion {
		v.fail("version", 0, "upgrade cardshare, or write the file for this version ("+strconv.Itoa(FormatVersion)+")",
			"version %d is not a format this cardshare reads (it reads %d)", c.Version, FormatVersion)
	}
	h := c.Host
	if !slices.Contains([]string{"", "auto", "socket", "native"}, h.Backend) {
		v.fail("host.backend", 0, "use auto, socket (the pcscd socket) or native (the system's PC/SC API), or leave it out",
			"backend %q is not a PC/SC backend", h.Backend)
	}
	if h.PCSCDSocket != "" && !filepath.IsAbs(h.PCSCDSocket) {
		v.fail("host.pcscd_socket", 0, "write the full path of the host pcscd socket, such as /run/pcscd/pcscd.comm, or leave it out",
			"pcscd_socket %q is not an absolute path", h.PCSCDSocket)
	}
	if h.Keepalive != 0 && (h.Keepalive < minKeepalive || h.Keepalive > maxKeepalive) {
		v.fail("host.keepalive", 0, "choose between 1s and 1h; the default, 5s, notices a vanished guest within 15s",
			"keepalive %v is out of range", h.Keepalive)
	}
	for _, l := range []struct {
		key string
		n   int
	}{{"max_guest_conns", h.MaxGuestConns}, {"max_conns", h.MaxConns}} {
		if l.n < 0 || l.n > MaxConnsLimit {
			v.fail("host."+l.key, 0, fmt.Sprintf("choose between 1 and %d (pcscd serves about 200 clients in all), or leave it out", MaxConnsLimit),
				"%s %d is out of range", l.key, l.n)
		}
	}
	if h.MaxGuestConns > 0 && h.MaxConns > 0 && h.MaxGuestConns > h.MaxConns {
		v.fail("host.max_guest_conns", 0, "make max_conns (all guests) at least max_guest_conns (one guest)",
			"max_guest_conns %d is above max_conns %d", h.MaxGuestConns, h.MaxConns)
	}
	if !slices.Contains([]string{"", "debug", "info", "warn", "error"}, h.LogLevel) {
		v.fail("host.log_level", 0, "use debug, info, warn or error", "log_level %q is not a log level", h.LogLevel)
	}
	if !slices.Contains([]string{"", "text", "json"}, h.LogFormat) {
		v.fail("host.log_format", 0, "use text or json", "log_format %q is not a log format", h.LogFormat)
	}
	if h.SSHConfig != "" && !filepath.IsAbs(h.SSHConfig) {
		v.fail("host.ssh_config", 0, "write the full path (~/ is expanded): a service does not run in your working directory",
			"ssh_config %q is not an absolute path", h.SSHConfig)
	}

	chardevs := map[string]int{}   // ccid chardev → index
	names := map[string]int{}      // name → index
	sockets := map[[2]string]int{} // target and socket → index
	for i := range c.Guests {
		g := &c.Guests[i]
		v.guest(i, g)
		if n := g.label(); n != "" {
			if j, dup := names[n]; dup {
				v.fail(key(i, "name"), g.Line, "give each guest its own name: add `name:` to one of them",
					"guest %q is defined twice (first at line %d)", n, c.Guests[j].Line)
				continue
			}
			names[n] = i
		}
		if g.CCID != nil {
			for _, cd := range g.CCID.Chardevs {
				if j, dup := chardevs[cd]; dup {
					v.fail(key(i, "ccid"), g.Line, "each chardev belongs to one emulated reader of one guest", "guests %q and %q use the same chardev %s", c.Guests[j].label(), g.label(), cd)
				}
				chardevs[cd] = i
			}
			continue
		}
		if t := g.Target(); t != "" {
			k := [2]string{t, g.Socket}
			if j, dup := sockets[k]; dup {
				v.fail(key(i, "socket"), g.Line, "give one of them another `socket:` path in the guest",
					"guests %q and %q would forward into the same guest socket", c.Guests[j].label(), g.label())
				continue
			}
			sockets[k] = i
		}
	}
}

func (v *validator) guest(i int, g *Guest) {
	if g.CCID != nil {
		v.ccid(i, g)
	}
	switch {
	case g.CCID != nil:
	case g.Destination != "" && g.VM != "":
		v.fail(key(i, "vm"), g.Line, "keep one: destination is an ssh_config alias or [user@]host[:port], vm is a VM name",
			"guest %q has both destination and vm", g.label())
	case g.Destination == "" && g.VM == "":
		v.fail(key(i, ""), g.Line, "add `destination: user@host:port` (an ssh_config alias works too) or `vm: NAME`",
			"this guest has neither destination nor vm")
	}
	if g.Name != "" && !printable(g.Name) {
		v.fail(key(i, "name"), g.Line, "use letters, digits and punctuation, without spaces", "name %q contains a space or control character", g.Name)
	}
	for _, f := range []struct{ key, val string }{{"destination", g.Destination}, {"vm", g.VM}} {
		switch {
		case f.val == "":
		case !printable(f.val):
			v.fail(key(i, f.key), g.Line, "remove the spaces; quote nothing", "%s %q contains a space or control character", f.key, f.val)
		case strings.HasPrefix(f.val, "-"):
			v.fail(key(i, f.key), g.Line, "a host name cannot start with -", "%s %q starts with -", f.key, f.val)
		}
	}
	switch s := g.Socket; {
	case s == "":
	case strings.HasPrefix(s, "~"):
		v.fail(key(i, "socket"), g.Line, "write the absolute path in the guest, or leave socket out for a private default ($XDG_RUNTIME_DIR/cardshare/pcscd.comm)",
			"socket %q: ~ is not expanded in guest paths", s)
	case !path.IsAbs(s):
		v.fail(key(i, "socket"), g.Line, "write the absolute path in the guest, or leave socket out for a private default ($XDG_RUNTIME_DIR/cardshare/pcscd.comm)",
			"socket %q is not an absolute path", s)
	case strings.ContainsAny(s, "\n\x00"):
		v.fail(key(i, "socket"), g.Line, "choose a plain path", "socket %q contains a newline or NUL", s)
	case len(s) > unixsock.MaxPath:
		v.fail(key(i, "socket"), g.Line, "choose a shorter path, or leave socket out for a default that fits",
			"socket %q is %d bytes long; Unix sockets allow %d", s, len(s), unixsock.MaxPath)
	}
	seen := map[string]bool{}
	for j, r := range g.Readers {
		k := key(i, "readers."+strconv.Itoa(j))
		switch _, err := path.Match(r, ""); {
		case strings.TrimSpace(r) == "":
			v.fail(k, g.Line, "write a reader name or a pattern such as \"Yubico YubiKey*\"", "readers has an empty entry")
		case err != nil:
			v.fail(k, g.Line, "patterns use * ? and [...]; escape a literal one with \\", "reader pattern %q is malformed", r)
		case seen[r]:
			v.fail(k, g.Line, "list each pattern once", "reader pattern %q is listed twice", r)
		}
		seen[r] = true
	}
	if !slices.Contains([]string{"", "allow", "deny"}, g.Control) {
		v.fail(key(i, "control"), g.Line, "use allow or deny", "control %q is neither allow nor deny", g.Control)
	}
}

// Warnings reports what is valid but most likely not what was meant: a
// reader pattern without a wildcard that cannot match a reader name,
// since pcscd names every reader "NAME XX YY" with two hex numbers
// (src/readerfactory.c, RFAddReader).
func (c *Config) Warnings() []*Error {
	var ws []*Error
	for i, g := range c.Guests {
		for j, r := range g.Readers {
			if strings.ContainsAny(r, `*?[\`) || slotSuffix.MatchString(r) {
				continue
			}
			k := key(i, "readers."+strconv.Itoa(j))
			line := c.lines[k]
			if line == 0 {
				line = g.Line
			}
			ws = append(ws, &Error{File: c.File, Line: line,
				Msg:  fmt.Sprintf("guest %q: reader pattern %q matches no reader: pcscd names readers \"NAME XX YY\"", g.label(), r),
				Hint: fmt.Sprintf("match every slot of the reader with %q, or name one with %q", r+"*", r+" 00 00"),
			})
		}
	}
	return ws
}

// slotSuffix ends a reader name: pcscd's slot numbers, in hex.
var slotSuffix = regexp.MustCompile(` [0-9A-F]{2} [0-9A-F]{2}$`)

// DefaultPath is the configuration file used without --config:
// $XDG_CONFIG_HOME/cardshare/config.yaml, else
// ~/.config/cardshare/config.yaml.
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "cardshare", "config.yaml"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("config: no home directory for the default config file: %w", err)
	}
	return filepath.Join(home, ".config", "cardshare", "config.yaml"), nil
}

// key is the lines key of guest i's key k, or of the guest itself.
func key(i int, k string) string {
	if k == "" {
		return "guests." + strconv.Itoa(i)
	}
	return "guests." + strconv.Itoa(i) + "." + k
}

// printable reports a string without spaces or control characters.
func printable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) < 0
}
