package sshdial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// TestHostKey runs Dial against an in-process server whose user key is
// authorized, varying known_hosts and StrictHostKeyChecking.
func TestHostKey(t *testing.T) {
	ed := newSigner(t, "ed25519")
	ec := newSigner(t, "ecdsa")
	other := newSigner(t, "ed25519")
	tests := []struct {
		name      string
		hostKeys  []ssh.Signer // as the server offers them
		setup     func(t *testing.T, tgt *Target, hostport string)
		acceptNew bool
		wantErr   error  // nil: must connect
		wantLog   string // substring of the log
		check     func(t *testing.T, tgt Target, hostport string)
	}{{
		name:     "known",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], hp, ed.PublicKey())
		},
	}, {
		name:     "unknown refused",
		hostKeys: []ssh.Signer{ed},
		wantErr:  ErrHostUnknown,
		check:    noFile,
	}, {
		name:     "unknown refused with ask",
		hostKeys: []ssh.Signer{ed},
		setup:    func(t *testing.T, tgt *Target, _ string) { tgt.StrictHostKeyChecking = "ask" },
		wantErr:  ErrHostUnknown,
		check:    noFile,
	}, {
		name:      "unknown accepted with AcceptNew",
		hostKeys:  []ssh.Signer{ed},
		acceptNew: true,
		wantLog:   "added host key",
		check:     recorded(ed.PublicKey(), false),
	}, {
		name:     "unknown accepted with accept-new, dir created",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, _ string) {
			tgt.StrictHostKeyChecking = "accept-new"
			tgt.KnownHostsFiles[0] = filepath.Join(filepath.Dir(tgt.KnownHostsFiles[0]), "new", "known_hosts")
		},
		check: func(t *testing.T, tgt Target, hp string) {
			recorded(ed.PublicKey(), false)(t, tgt, hp)
			for p, mode := range map[string]os.FileMode{tgt.KnownHostsFiles[0]: 0o600, filepath.Dir(tgt.KnownHostsFiles[0]): 0o700 | os.ModeDir} {
				if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
					t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, mode)
				}
			}
		},
	}, {
		name:      "hashed entry",
		hostKeys:  []ssh.Signer{ed},
		setup:     func(t *testing.T, tgt *Target, _ string) { tgt.HashKnownHosts = true },
		acceptNew: true,
		check:     recorded(ed.PublicKey(), true),
	}, {
		name:     "appended after a line without newline",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, _ string) {
			writeFile(t, tgt.KnownHostsFiles[0], knownhosts.Line([]string{"elsewhere"}, other.PublicKey()))
		},
		acceptNew: true,
		check: func(t *testing.T, tgt Target, hp string) {
			recorded(ed.PublicKey(), false)(t, tgt, hp)
			if b, _ := os.ReadFile(tgt.KnownHostsFiles[0]); strings.Count(string(b), "\n") != 2 {
				t.Errorf("known_hosts:\n%s", b)
			}
		},
	}, {
		name:     "changed refused",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], hp, other.PublicKey())
		},
		wantErr: ErrHostKeyChanged,
		wantLog: "host key changed",
	}, {
		name:     "changed refused despite AcceptNew and StrictHostKeyChecking no",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], hp, other.PublicKey())
			tgt.StrictHostKeyChecking = "no"
		},
		acceptNew: true,
		wantErr:   ErrHostKeyChanged,
		check: func(t *testing.T, tgt Target, hp string) {
			if b, _ := os.ReadFile(tgt.KnownHostsFiles[0]); strings.Count(string(b), "\n") != 1 {
				t.Errorf("known_hosts was modified:\n%s", b)
			}
		},
	}, {
		// Vagrant and Lima write StrictHostKeyChecking no with
		// UserKnownHostsFile /dev/null.
		name:     "no checking, no files: allowed with a warning",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, _ string) {
			tgt.StrictHostKeyChecking, tgt.KnownHostsFiles = "no", nil
		},
		wantLog: "level=WARN msg=\"host key not verified (StrictHostKeyChecking no)\"",
	}, {
		// x/crypto prefers ecdsa over ed25519; without HostKeyAlgorithms
		// from known_hosts it would negotiate ecdsa and call it a mismatch.
		name:     "several key types, ed25519 known",
		hostKeys: []ssh.Signer{ec, ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], hp, ed.PublicKey())
		},
	}, {
		name:     "several key types, ecdsa known",
		hostKeys: []ssh.Signer{ed, ec},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], hp, ec.PublicKey())
		},
	}, {
		name:     "HostKeyAlias looked up instead of host:port",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, _ string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], "guest-vm", ed.PublicKey())
			tgt.HostKeyAlias = "guest-vm"
		},
	}, {
		name:     "HostKeyAlias recorded as alias",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, _ string) {
			writeKnownHosts(t, tgt.KnownHostsFiles[0], "127.0.0.1", ed.PublicKey()) // wrong port: no match
			tgt.HostKeyAlias = "guest-vm"
		},
		acceptNew: true,
		check: func(t *testing.T, tgt Target, _ string) {
			b, _ := os.ReadFile(tgt.KnownHostsFiles[0])
			if !strings.Contains(string(b), "\nguest-vm ssh-ed25519 ") {
				t.Errorf("known_hosts:\n%s", b)
			}
		},
	}, {
		name:     "global file read, user file written",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			g := filepath.Join(filepath.Dir(tgt.KnownHostsFiles[0]), "global")
			writeKnownHosts(t, g, hp, ed.PublicKey())
			tgt.GlobalKnownHostsFiles = []string{g}
		},
		check: noFile,
	}, {
		name:     "revoked key refused",
		hostKeys: []ssh.Signer{ed},
		setup: func(t *testing.T, tgt *Target, hp string) {
			writeFile(t, tgt.KnownHostsFiles[0], "@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ed.PublicKey())))+"\n")
		},
		acceptNew: true,
		wantErr:   errRevoked,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, tgt := serverWithUser(t, tt.hostKeys)
			if tt.setup != nil {
				tt.setup(t, &tgt, srv.Addr)
			}
			log, buf := logBuffer(t)
			c, err := Dial(context.Background(), tgt, DialOptions{AcceptNew: tt.acceptNew, Logger: log})
			switch {
			case tt.wantErr == errRevoked:
				var re *xknownhosts.RevokedError
				if !errors.As(err, &re) || errors.Is(err, ErrHostUnknown) {
					t.Fatalf("err = %v, want RevokedError", err)
				}
			case tt.wantErr != nil:
				var he *hostKeyError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &he) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if he.Fingerprint != ssh.FingerprintSHA256(ed.PublicKey()) || he.KeyType != "ssh-ed25519" || !strings.Contains(he.Host, strconv.Itoa(srv.Port)) {
					t.Errorf("hostKeyError = %+v", he)
				}
			case err != nil:
				t.Fatal(err)
			default:
				execOK(t, c)
				c.Close()
			}
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, buf)
			}
			if tt.check != nil {
				tt.check(t, tgt, srv.Addr)
			}
		})
	}
}

var errRevoked = errors.New("revoked")

// TestAcceptNewNotRecorded: accept-new with UserKnownHostsFile /dev/null
// (Vagrant, Lima) accepts every key; it is said once per guest, not
// silently and not on every reconnect (issue 13, item 9).
func TestAcceptNewNotRecorded(t *testing.T) {
	ed := newSigner(t, "ed25519")
	srv, tgt := serverWithUser(t, []ssh.Signer{ed})
	tgt.KnownHostsFiles = nil
	log, buf := logBuffer(t)
	for range 3 {
		c, err := Dial(context.Background(), tgt, DialOptions{AcceptNew: true, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	want := "host keys for " + knownhosts.Normalize(srv.Addr) + " are not recorded: every key is accepted"
	if n := strings.Count(buf.String(), want); n != 1 || !strings.Contains(buf.String(), "level=WARN") {
		t.Errorf("%d warnings %q in:\n%s", n, want, buf)
	}
}

// serverWithUser starts a server with the given host keys that authorizes
// a fresh user key, and returns a Target using that key.
func serverWithUser(t *testing.T, hostKeys []ssh.Signer) (*testServer, Target) {
	dir := t.TempDir()
	k, s := newKey(t, "ed25519")
	writeKeyFile(t, filepath.Join(dir, "id"), k, "", false)
	srv := startServer(t, hostKeys, s.PublicKey())
	tgt := srv.target(filepath.Join(dir, "known_hosts"))
	tgt.IdentityFiles = []string{filepath.Join(dir, "id")}
	return srv, tgt
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func noFile(t *testing.T, tgt Target, _ string) {
	if _, err := os.Stat(tgt.KnownHostsFiles[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts written: %v", err)
	}
}

// recorded checks that the key was added to the first known_hosts file and
// that a strict Dial now accepts it.
func recorded(key ssh.PublicKey, hashed bool) func(*testing.T, Target, string) {
	return func(t *testing.T, tgt Target, hp string) {
		t.Helper()
		b, err := os.ReadFile(tgt.KnownHostsFiles[0])
		if err != nil {
			t.Fatal(err)
		}
		if hashed != strings.Contains(string(b), "|1|") {
			t.Errorf("hashed=%v, known_hosts:\n%s", hashed, b)
		}
		db, err := knownhosts.NewDB(tgt.KnownHostsFiles[0])
		if err != nil {
			t.Fatal(err)
		}
		lookup := hp
		if tgt.HostKeyAlias != "" {
			lookup = tgt.HostKeyAlias + ":22"
		}
		if err := db.HostKeyCallback()(lookup, &net.TCPAddr{}, key); err != nil {
			t.Errorf("recorded entry does not match: %v\n%s", err, b)
		}
		tgt.StrictHostKeyChecking = "yes"
		c, err := Dial(context.Background(), tgt, DialOptions{})
		if err != nil {
			t.Fatalf("strict Dial after recording: %v", err)
		}
		c.Close()
	}
}

// TestPlainKnownHostsMismatch checks why HostKeyAlgorithms is set: a server
// that offers an ecdsa key before its known ed25519 key must be accepted.
// x/crypto alone negotiates the ecdsa key and reports a mismatch although
// the host's ed25519 key is known (golang/go#29286); Dial avoids that by
// asking for the known key types first.
func TestPlainKnownHostsMismatch(t *testing.T) {
	ed, ec := newSigner(t, "ed25519"), newSigner(t, "ecdsa")
	srv, tgt := serverWithUser(t, []ssh.Signer{ec, ed})
	writeKnownHosts(t, tgt.KnownHostsFiles[0], srv.Addr, ed.PublicKey())

	hk, err := newHostKeyChecker(tgt, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	algs := hk.algorithms()
	if len(algs) == 0 || algs[0] != ssh.KeyAlgoED25519 {
		t.Errorf("host key algorithms %v: want the known type %s first", algs, ssh.KeyAlgoED25519)
	}
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		if !slices.Contains(algs, a) {
			t.Errorf("host key algorithms %v lack %s", algs, a)
		}
	}

	c, err := Dial(context.Background(), tgt, DialOptions{})
	if err != nil {
		t.Fatalf("Dial with the ed25519 key known and ecdsa offered first: %v", err)
	}
	c.Close()

	// The reason, for the record: without the algorithms x/crypto picks
	// ecdsa. If it stops doing so, HostKeyAlgorithms may be redundant, but
	// Dial must work either way.
	cb, err := xknownhosts.New(tgt.KnownHostsFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: "u", HostKeyCallback: cb}); !knownhosts.IsHostKeyChanged(err) {
		t.Logf("plain x/crypto no longer reports a mismatch here (err = %v)", err)
	}
}

func TestHostKeyDetails(t *testing.T) {
	err := fmt.Errorf("myvm: %w", &hostKeyError{Host: "[127.0.0.1]:2222", Files: []string{"/k/known_hosts"}, Err: ErrHostKeyChanged})
	if h, f, ok := HostKeyDetails(err); !ok || h != "[127.0.0.1]:2222" || len(f) != 1 || f[0] != "/k/known_hosts" {
		t.Errorf("HostKeyDetails = %q %q %v", h, f, ok)
	}
	if _, _, ok := HostKeyDetails(ErrAuth); ok {
		t.Error("HostKeyDetails of another error")
	}
}
