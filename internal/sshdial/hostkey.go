package sshdial

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

var (
	// ErrHostUnknown means the host's key is in no known_hosts file and
	// StrictHostKeyChecking (or DialOptions.AcceptNew) did not allow adding it.
	ErrHostUnknown = errors.New("host key is not known")
	// ErrHostKeyChanged means known_hosts holds a different key for the
	// host: the guest was reinstalled, or someone is intercepting the
	// connection. Dial always refuses it.
	ErrHostKeyChanged = errors.New("host key has changed")
)

// hostKeyError describes a refused host key. errors.Is matches it against
// ErrHostUnknown or ErrHostKeyChanged.
type hostKeyError struct {
	// Host is the name looked up in known_hosts: "[host]:port", "host" for
	// port 22, or the HostKeyAlias.
	Host string
	// KeyType and Fingerprint (SHA256:...) identify the key the server sent.
	KeyType, Fingerprint string
	// Files are the known_hosts files that were read.
	Files []string
	// Known lists file:line of the entries that disagree (changed keys only).
	Known []string
	// Err is ErrHostUnknown or ErrHostKeyChanged.
	Err error
}

func (e *hostKeyError) Error() string {
	if e.Err == ErrHostKeyChanged {
		return fmt.Sprintf("host key for %s has changed: server sent %s %s, known_hosts has %s; someone may be intercepting the connection",
			e.Host, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "))
	}
	return fmt.Sprintf("host key for %s is not known (%s %s)", e.Host, e.KeyType, e.Fingerprint)
}

func (e *hostKeyError) Unwrap() error { return e.Err }

// HostKeyDetails returns, for an error of a refused host key, the name
// looked up in known_hosts ("[127.0.0.1]:2222") and the known_hosts files
// that were read, so that a hint can name the user's own files
// (`ssh-keygen -f FILE -R NAME`).
func HostKeyDetails(err error) (host string, files []string, ok bool) {
	var e *hostKeyError
	if !errors.As(err, &e) {
		return "", nil, false
	}
	return e.Host, e.Files, true
}

// hostKeyChecker implements known_hosts checking with OpenSSH's
// StrictHostKeyChecking semantics for one Target.
type hostKeyChecker struct {
	lookup  string // host:port handed to the known_hosts database
	files   []string
	db      *knownhosts.HostKeyDB // nil when no known_hosts file exists
	mode    string                // yes, accept-new or no
	writeTo string                // where accepted keys go; "" = nowhere
	hash    bool
	log     *slog.Logger
}

func newHostKeyChecker(t Target, acceptNew bool, log *slog.Logger) (*hostKeyChecker, error) {
	h := &hostKeyChecker{
		// OpenSSH looks up HostKeyAlias without a port; port 22 normalises away.
		lookup: net.JoinHostPort(t.HostName, strconv.Itoa(t.Port)),
		mode:   t.StrictHostKeyChecking,
		hash:   t.HashKnownHosts,
		log:    log,
	}
	if t.HostKeyAlias != "" {
		h.lookup = net.JoinHostPort(t.HostKeyAlias, "22")
	}
	if h.mode != "accept-new" && h.mode != "no" {
		h.mode = "yes"
	}
	if acceptNew && h.mode == "yes" {
		h.mode = "accept-new"
	}
	if len(t.KnownHostsFiles) > 0 {
		h.writeTo = t.KnownHostsFiles[0]
	}
	for _, f := range slices.Concat(t.KnownHostsFiles, t.GlobalKnownHostsFiles) {
		if fileExists(f) {
			h.files = append(h.files, f)
		}
	}
	if len(h.files) > 0 {
		db, err := knownhosts.NewDB(h.files...)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		h.db = db
	}
	return h, nil
}

// algorithms returns the host key algorithms to ask for: the types known
// for this host first, so that x/crypto does not negotiate a type the
// server offers first and then report a mismatch (golang/go#29286).
func (h *hostKeyChecker) algorithms() []string {
	if h.db == nil {
		return nil
	}
	known := h.db.HostKeyAlgorithms(h.lookup)
	if len(known) == 0 {
		return nil
	}
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		if !slices.Contains(known, a) {
			known = append(known, a)
		}
	}
	return known
}

// check is the ssh.HostKeyCallback. It ignores the address x/crypto passes
// and looks up h.lookup, which honours HostKeyAlias.
func (h *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	if _, ok := remote.(*net.TCPAddr); !ok {
		remote = &net.TCPAddr{} // x/crypto's knownhosts insists on a TCP address
	}
	var err error = &xknownhosts.KeyError{}
	if h.db != nil {
		err = h.db.HostKeyCallback()(h.lookup, remote, key)
	}
	fp := ssh.FingerprintSHA256(key)
	host := knownhosts.Normalize(h.lookup)
	switch {
	case err == nil:
		return nil
	case knownhosts.IsHostKeyChanged(err):
		var ke *xknownhosts.KeyError
		errors.As(err, &ke)
		var known []string
		for _, k := range ke.Want {
			known = append(known, fmt.Sprintf("%s:%d (%s)", k.Filename, k.Line, k.Key.Type()))
		}
		h.log.Error("host key changed: refusing to connect", "addr", host, "type", key.Type(), "fingerprint", fp, "known", known)
		return &hostKeyError{Host: host, KeyType: key.Type(), Fingerprint: fp, Files: h.files, Known: known, Err: ErrHostKeyChanged}
	case !knownhosts.IsHostUnknown(err):
		return fmt.Errorf("check host key of %s: %w", host, err) // e.g. @revoked
	case h.mode == "yes":
		return &hostKeyError{Host: host, KeyType: key.Type(), Fingerprint: fp, Files: h.files, Err: ErrHostUnknown}
	}
	if h.mode == "no" {
		h.log.Warn("host key not verified (StrictHostKeyChecking no)", "addr", host, "type", key.Type(), "fingerprint", fp)
	}
	if h.writeTo == "" {
		if h.mode == "accept-new" {
			warnNotRecorded(h.log, h.lookup, host, key.Type(), fp)
		}
		return nil
	}
	name := host
	if h.hash {
		name = xknownhosts.HashHostname(host)
	}
	line := name + " " + string(ssh.MarshalAuthorizedKey(key))
	if err := appendKnownHost(h.writeTo, line); err != nil {
		// Like OpenSSH: failing to record the key does not fail the connection.
		h.log.Warn("could not add host key to known_hosts", "file", h.writeTo, "err", err)
		return nil
	}
	h.log.Info("added host key to known_hosts", "addr", host, "type", key.Type(), "fingerprint", fp, "file", h.writeTo)
	return nil
}

// notRecorded holds the hosts (known_hosts lookup names) already warned
// about by warnNotRecorded in this process.
var notRecorded sync.Map

// warnNotRecorded warns, once per host and process (a forward reconnects
// for hours), that accept-new has nowhere to record keys: with
// UserKnownHostsFile /dev/null, as Vagrant and Lima write, every key is
// accepted on every connection, so accept-new is StrictHostKeyChecking no.
func warnNotRecorded(log *slog.Logger, lookup, host, keyType, fp string) {
	if _, done := notRecorded.LoadOrStore(lookup, true); done {
		return
	}
	log.Warn(fmt.Sprintf("host keys for %s are not recorded: every key is accepted", host),
		"host", host, "type", keyType, "fingerprint", fp,
		"why", "accept-new without a UserKnownHostsFile (it is /dev/null or none)")
}

// appendKnownHost appends line (ending in \n) to file, creating it 0600 in
// a 0700 directory, and starting on a new line if the file lacks a final one.
func appendKnownHost(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	_, err = io.WriteString(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
