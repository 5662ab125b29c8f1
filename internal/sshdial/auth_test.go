package sshdial

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// startAgent serves an in-process keyring holding keys on a Unix socket.
func startAgent(t *testing.T, keys ...crypto.Signer) string {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "cs") // sun_path is 108 bytes: keep it short
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				agent.ServeAgent(kr, c)
			}()
		}
	}()
	return sock
}

// promptRecorder answers passphrase prompts from a list and counts them.
type promptRecorder struct {
	mu      sync.Mutex
	answers []string
	prompts []string
}

func (p *promptRecorder) prompt(msg string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prompts = append(p.prompts, msg)
	if len(p.answers) == 0 {
		return nil, errors.New("no more answers")
	}
	a := p.answers[0]
	p.answers = p.answers[1:]
	return []byte(a), nil
}

func (p *promptRecorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.prompts)
}

func TestAuth(t *testing.T) {
	type key struct {
		priv crypto.Signer
		pub  ssh.PublicKey
		fp   string
	}
	mk := func(kind string) key {
		k, s := newKey(t, kind)
		return key{k, s.PublicKey(), ssh.FingerprintSHA256(s.PublicKey())}
	}
	a, b, c, r := mk("ed25519"), mk("ecdsa"), mk("ed25519"), mk("rsa")
	type file struct {
		name string
		k    key
		pass string // encrypted when set
		pub  bool   // write .pub
		only bool   // write only the .pub
	}
	tests := []struct {
		name           string
		agent          []key
		files          []file
		identitiesOnly bool
		authorized     []key
		answers        []string // nil: Prompt is nil
		wantErr        bool
		wantOffered    []key // in order
		wantPrompts    int
		wantSkipped    string
	}{{
		name: "agent key", agent: []key{a, b}, authorized: []key{b},
		wantOffered: []key{a, b},
	}, {
		name: "file key", files: []file{{name: "id", k: a}}, authorized: []key{a},
		wantOffered: []key{a},
	}, {
		name: "agent before files", agent: []key{b}, files: []file{{name: "id", k: a}}, authorized: []key{a},
		wantOffered: []key{b, a},
	}, {
		name: "encrypted file with prompt", files: []file{{name: "id", k: a, pass: "pw"}}, authorized: []key{a},
		answers: []string{"pw"}, wantOffered: []key{a}, wantPrompts: 1,
	}, {
		name: "encrypted rsa file, wrong passphrase first", files: []file{{name: "id_rsa", k: r, pass: "pw"}}, authorized: []key{r},
		answers: []string{"bad", "pw"}, wantOffered: []key{r}, wantPrompts: 2,
	}, {
		name: "encrypted file without prompt is skipped", files: []file{{name: "id", k: a, pass: "pw"}}, authorized: []key{a},
		wantErr: true, wantSkipped: "passphrase protected",
	}, {
		name: "agent copy preferred to prompting", agent: []key{a}, files: []file{{name: "id", k: a, pass: "pw"}}, authorized: []key{a},
		answers: []string{}, wantOffered: []key{a},
	}, {
		name: "no prompt when the agent key is accepted first", agent: []key{b}, files: []file{{name: "id", k: a, pass: "pw"}}, authorized: []key{b},
		answers: []string{}, wantOffered: []key{b},
	}, {
		name: "no prompt for a key the server refuses", files: []file{{name: "id", k: a, pass: "pw"}, {name: "id2", k: c}}, authorized: []key{c},
		answers: []string{}, wantOffered: []key{a, c},
	}, {
		name: "legacy: encrypted without public key, asked when needed", files: []file{{name: "id", k: b, pass: "pw"}}, authorized: []key{b},
		answers: []string{"pw"}, wantOffered: []key{b}, wantPrompts: 1,
	}, {
		name: "IdentitiesOnly offers only agent keys named by files", agent: []key{a, b}, files: []file{{name: "id_b", k: b, only: true}},
		identitiesOnly: true, authorized: []key{a},
		wantErr: true, wantOffered: []key{b},
	}, {
		name: "IdentitiesOnly with a matching agent key", agent: []key{a, b}, files: []file{{name: "id_b", k: b, only: true}},
		identitiesOnly: true, authorized: []key{b}, wantOffered: []key{b},
	}, {
		name: "IdentitiesOnly matches an encrypted file's embedded public key", agent: []key{a, b}, files: []file{{name: "id_b", k: b, pass: "pw"}},
		identitiesOnly: true, authorized: []key{b}, answers: []string{}, wantOffered: []key{b},
	}, {
		name: "nothing accepted", agent: []key{a}, files: []file{{name: "id", k: b}}, authorized: []key{c},
		wantErr: true, wantOffered: []key{a, b},
	}, {
		name: "unreachable agent", files: []file{{name: "id", k: b}}, authorized: []key{c},
		wantErr: true, wantSkipped: "agent /nonexistent",
	}}
	hostKey := newSigner(t, "ed25519")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var authorized []ssh.PublicKey
			for _, k := range tt.authorized {
				authorized = append(authorized, k.pub)
			}
			srv := startServer(t, []ssh.Signer{hostKey}, authorized...)
			tgt := srv.target(filepath.Join(dir, "known_hosts"))
			writeKnownHosts(t, tgt.KnownHostsFiles[0], srv.Addr, hostKey.PublicKey())
			tgt.IdentitiesOnly = tt.identitiesOnly
			if tt.name == "unreachable agent" {
				tgt.IdentityAgent = "/nonexistent"
			} else if tt.agent != nil {
				var privs []crypto.Signer
				for _, k := range tt.agent {
					privs = append(privs, k.priv)
				}
				tgt.IdentityAgent = startAgent(t, privs...)
			}
			for _, f := range tt.files {
				p := filepath.Join(dir, f.name)
				if tt.name == "legacy: encrypted without public key, asked when needed" {
					writeLegacyEncrypted(t, p, f.k.priv, f.pass)
				} else {
					writeKeyFile(t, p, f.k.priv, f.pass, f.pub || f.only)
				}
				if f.only {
					os.Remove(p)
				}
				tgt.IdentityFiles = append(tgt.IdentityFiles, p)
			}
			opts := DialOptions{}
			pr := &promptRecorder{answers: tt.answers}
			if tt.answers != nil {
				opts.Prompt = pr.prompt
			}
			client, err := Dial(context.Background(), tgt, opts)
			if tt.wantErr {
				var ae *authError
				if !errors.Is(err, ErrAuth) || !errors.As(err, &ae) {
					t.Fatalf("err = %v, want ErrAuth", err)
				}
				if !slices.Contains(ae.Tried, "publickey") || !slices.Contains(ae.Allowed, "publickey") || ae.User != "tester" {
					t.Errorf("authError = %+v", ae)
				}
				if !strings.Contains(err.Error(), tt.wantSkipped) {
					t.Errorf("error %q lacks %q", err, tt.wantSkipped)
				}
				for _, k := range []key{a, b, c} {
					blob := base64.StdEncoding.EncodeToString(k.pub.Marshal())
					if strings.Contains(err.Error(), blob[20:40]) {
						t.Errorf("error contains key material: %v", err)
					}
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				client.Close()
			}
			var want []string
			for _, k := range tt.wantOffered {
				want = append(want, k.fp)
			}
			if got := srv.offeredKeys(); tt.wantOffered != nil && !slices.Equal(got, want) {
				t.Errorf("offered %v, want %v", got, want)
			}
			if pr.count() != tt.wantPrompts {
				t.Errorf("prompted %d times (%q), want %d", pr.count(), pr.prompts, tt.wantPrompts)
			}
			if tt.wantPrompts > 0 && !strings.Contains(pr.prompts[0], dir) {
				t.Errorf("prompt %q does not name the key file", pr.prompts[0])
			}
		})
	}
}

// writeLegacyEncrypted writes a PKCS#1/SEC1 PEM key with legacy PEM
// encryption, which hides the public key until decrypted.
func writeLegacyEncrypted(t *testing.T, path string, k crypto.Signer, pass string) {
	t.Helper()
	// Go can no longer produce legacy encrypted PEM, so use ssh-keygen.
	writeKeyFile(t, path, k, "", false)
	out, err := exec.Command("ssh-keygen", "-q", "-p", "-m", "PEM", "-P", "", "-N", pass, "-f", path).CombinedOutput()
	if err != nil {
		t.Skipf("ssh-keygen: %v: %s", err, out)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "ENCRYPTED") {
		t.Skipf("ssh-keygen did not write legacy PEM:\n%s", b)
	}
}
