package sshdial

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/logtest"
)

// testServer is an in-process SSH server on 127.0.0.1. It accepts
// "session" channels (exec replies with exit status 0) and "direct-tcpip"
// (so it can be a jump host), and records the client keys offered to it.
type testServer struct {
	Addr string
	Port int

	mu      sync.Mutex
	offered []string // fingerprints, in order, duplicates removed
	open    int      // connections currently open
}

func startServer(t *testing.T, hostKeys []ssh.Signer, authorized ...ssh.PublicKey) *testServer {
	t.Helper()
	s := &testServer{}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			fp := ssh.FingerprintSHA256(key)
			s.mu.Lock()
			if n := len(s.offered); n == 0 || s.offered[n-1] != fp {
				s.offered = append(s.offered, fp)
			}
			s.mu.Unlock()
			for _, a := range authorized {
				if bytes.Equal(a.Marshal(), key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("not authorized")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	s.Port = ln.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conns.Delete(c)
				s.serve(c, cfg)
			}()
		}
	}()
	return s
}

func (s *testServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.open--
		s.mu.Unlock()
	}()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for req := range creqs {
					req.Reply(req.Type == "exec", nil)
					if req.Type == "exec" {
						ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
						ch.Close()
					}
				}
			}()
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			dst, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				dst.Close()
				continue
			}
			go ssh.DiscardRequests(creqs)
			go func() { io.Copy(dst, ch); dst.Close() }()
			go func() { io.Copy(ch, dst); ch.Close() }()
		default:
			nc.Reject(ssh.UnknownChannelType, "no")
		}
	}
	sc.Close()
}

func (s *testServer) offeredKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.offered...)
}

func (s *testServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// newKey returns a fresh private key and its signer.
func newKey(t *testing.T, kind string) (crypto.Signer, ssh.Signer) {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, s
}

func newSigner(t *testing.T, kind string) ssh.Signer {
	_, s := newKey(t, kind)
	return s
}

// writeKeyFile writes k as an OpenSSH private key (encrypted when pass is
// not empty) and, if pub, its .pub file.
func writeKeyFile(t *testing.T, path string, k crypto.Signer, pass string, pub bool) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(k, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if pass != "" {
		// x/crypto encrypts with 16 bcrypt rounds, which takes seconds
		// under the race detector; ssh-keygen can use 1.
		out, err := exec.Command("ssh-keygen", "-q", "-p", "-a", "1", "-P", "", "-N", pass, "-f", path).CombinedOutput()
		if err != nil {
			block, err = ssh.MarshalPrivateKeyWithPassphrase(k, "test", []byte(pass))
			if err != nil {
				t.Fatalf("%v (ssh-keygen: %s)", err, out)
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pub {
		sp, err := ssh.NewPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeKnownHosts writes known_hosts lines for hostport with the keys.
func writeKnownHosts(t *testing.T, path, hostport string, keys ...ssh.PublicKey) {
	t.Helper()
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{hostport}, k) + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// target returns a Target for s with strict host key checking and no agent.
func (s *testServer) target(knownHosts string) Target {
	return Target{
		Alias: "test", User: "tester", HostName: "127.0.0.1", Port: s.Port,
		KnownHostsFiles: []string{knownHosts}, StrictHostKeyChecking: "yes",
		ConnectTimeout: 5 * time.Second,
	}
}

// logBuffer returns a logger writing text into a buffer; a line that
// repeats a key fails t.
func logBuffer(t testing.TB) (*slog.Logger, *logtest.Buffer) {
	b := &logtest.Buffer{}
	return logtest.New(t, b, slog.LevelDebug), b
}

// exec runs a command on c and fails the test if it does not succeed.
func execOK(t *testing.T, c *ssh.Client) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Run("true"); err != nil {
		t.Fatal(err)
	}
}

func TestDialConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	_, err = Dial(context.Background(), Target{User: "u", HostName: "127.0.0.1", Port: addr.Port}, DialOptions{})
	var ce *connectError
	if !errors.As(err, &ce) || ce.Addr != addr.String() || !errors.Is(err, syscall.ECONNREFUSED) || ce.Timeout() {
		t.Fatalf("err = %v, want connectError for %s wrapping ECONNREFUSED", err, addr)
	}
}

// silentServer accepts TCP connections and never speaks SSH.
func silentServer(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDialHandshakeTimeout(t *testing.T) {
	port := silentServer(t)
	start := time.Now()
	_, err := Dial(context.Background(), Target{User: "u", HostName: "127.0.0.1", Port: port, ConnectTimeout: 200 * time.Millisecond}, DialOptions{})
	var ce *connectError
	if !errors.As(err, &ce) || !ce.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a timed-out connectError", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestDialContextCancel(t *testing.T) {
	port := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, Target{User: "u", HostName: "127.0.0.1", Port: port, ConnectTimeout: time.Minute}, DialOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestDialUnresolvedJump(t *testing.T) {
	_, err := Dial(context.Background(), Target{HostName: "h", Port: 22, ProxyJump: []string{"bastion"}}, DialOptions{})
	if err == nil {
		t.Fatal("Dial with unresolved ProxyJump connected directly")
	}
}

// TestDialJump connects through two jump hosts and checks that closing the
// final client closes the whole chain.
func TestDialJump(t *testing.T) {
	dir := t.TempDir()
	hostKey := newSigner(t, "ed25519")
	userKey, userSigner := newKey(t, "ed25519")
	writeKeyFile(t, filepath.Join(dir, "id"), userKey, "", false)
	j1 := startServer(t, []ssh.Signer{hostKey}, userSigner.PublicKey())
	j2 := startServer(t, []ssh.Signer{hostKey}, userSigner.PublicKey())
	final := startServer(t, []ssh.Signer{hostKey}, userSigner.PublicKey())
	kh := filepath.Join(dir, "known_hosts")
	writeKnownHosts(t, kh, "127.0.0.1:"+strconv.Itoa(final.Port), hostKey.PublicKey())
	// Jump hosts are trusted with a different mechanism each: AcceptNew
	// would add them; here the hops use HostKeyAlias entries.
	f, _ := os.OpenFile(kh, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(knownhosts.Line([]string{"jump"}, hostKey.PublicKey()) + "\n")
	f.Close()

	hop := func(s *testServer) Target {
		h := s.target(kh)
		h.HostKeyAlias = "jump"
		h.IdentityFiles = []string{filepath.Join(dir, "id")}
		return h
	}
	tgt := final.target(kh)
	tgt.IdentityFiles = []string{filepath.Join(dir, "id")}
	tgt.ProxyJump = []string{"j1", "j2"}
	tgt.Jumps = []Target{hop(j1), hop(j2)}
	c, err := Dial(context.Background(), tgt, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	execOK(t, c)
	if j1.openConns() != 1 || j2.openConns() != 1 || final.openConns() != 1 {
		t.Errorf("open connections j1=%d j2=%d final=%d, want 1 each", j1.openConns(), j2.openConns(), final.openConns())
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for j1.openConns()+j2.openConns()+final.openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("chain not closed: j1=%d j2=%d final=%d", j1.openConns(), j2.openConns(), final.openConns())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A refused hop is reported as such and leaves nothing open.
	tgt.Jumps[1].HostKeyAlias = "nobody"
	_, err = Dial(context.Background(), tgt, DialOptions{})
	if !errors.Is(err, ErrHostUnknown) {
		t.Fatalf("err = %v, want ErrHostUnknown from the second hop", err)
	}
	for deadline := time.Now().Add(5 * time.Second); j1.openConns() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("first hop left open after the second failed")
		}
	}
}

func TestPreferredCiphers(t *testing.T) {
	c := preferredCiphers()
	if c[0] != ssh.CipherAES128GCM && c[0] != ssh.CipherChaCha20Poly1305 {
		t.Errorf("first cipher %s, want an AEAD", c[0])
	}
	dir := t.TempDir()
	hostKey := newSigner(t, "ed25519")
	k, s := newKey(t, "ed25519")
	writeKeyFile(t, filepath.Join(dir, "id"), k, "", false)
	srv := startServer(t, []ssh.Signer{hostKey}, s.PublicKey())
	kh := filepath.Join(dir, "kh")
	writeKnownHosts(t, kh, srv.Addr, hostKey.PublicKey())
	tgt := srv.target(kh)
	tgt.IdentityFiles = []string{filepath.Join(dir, "id")}
	client, err := Dial(context.Background(), tgt, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if got := client.Conn.(ssh.AlgorithmsConnMetadata).Algorithms().Write.Cipher; got != c[0] {
		t.Errorf("negotiated %s, want %s", got, c[0])
	}
}

// A server that accepts TCP and sends no banner (a VM manager's NAT port
// forward while the guest boots) fails after BannerTimeout, not after the
// whole ConnectTimeout; a server that sends its banner late but within
// ConnectTimeout is not cut off by it once the banner arrived.
func TestDialNoBanner(t *testing.T) {
	port := silentServer(t)
	start := time.Now()
	_, err := Dial(context.Background(), Target{User: "u", HostName: "127.0.0.1", Port: port, ConnectTimeout: time.Minute},
		DialOptions{BannerTimeout: 200 * time.Millisecond})
	var ce *connectError
	if !errors.As(err, &ce) || !ce.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a timed-out connectError", err)
	}
	if !errors.Is(err, ErrNoBanner) || !errors.Is(err, ErrConnect) || !strings.Contains(err.Error(), "no SSH banner within 200ms") {
		t.Errorf("err = %v, want it to say no SSH banner arrived", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v: the banner timeout did not apply", d)
	}
}

// The banner timer stops at the first byte: a server whose key exchange
// is slower than BannerTimeout still connects.
func TestDialSlowKexAfterBanner(t *testing.T) {
	s := startServer(t, []ssh.Signer{newSigner(t, "ed25519")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// A proxy that passes the banner at once and then holds the client's
	// bytes back for 600 ms.
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		up, err := net.Dial("tcp", s.Addr)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(c, up)
		time.Sleep(600 * time.Millisecond)
		io.Copy(up, c)
	}()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	tgt := Target{User: "u", HostName: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, ConnectTimeout: time.Minute,
		KnownHostsFiles: []string{kh}}
	_, err = Dial(context.Background(), tgt, DialOptions{BannerTimeout: 200 * time.Millisecond, AcceptNew: true})
	if err != nil && !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want the handshake to get as far as authentication", err)
	}
}

func TestDialNoSuchHost(t *testing.T) {
	// What net.Dialer returns for a name that does not exist (NXDOMAIN,
	// or no /etc/hosts line without DNS): a sandbox may have no resolver
	// to ask for a real one.
	var err error = &connectError{Addr: "myvmm:22", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "myvmm", IsNotFound: true}}}
	if !errors.Is(err, ErrNoSuchHost) {
		t.Fatalf("err = %v, want ErrNoSuchHost", err)
	}
	err = &connectError{Addr: "myvm:22", Err: &net.DNSError{Err: "server misbehaving", Name: "myvm", IsTemporary: true}}
	if errors.Is(err, ErrNoSuchHost) {
		t.Fatalf("err = %v: a resolver failure is not ErrNoSuchHost", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err = Dial(context.Background(), Target{User: "u", HostName: "127.0.0.1", Port: port}, DialOptions{})
	if !errors.Is(err, ErrConnect) || errors.Is(err, ErrNoSuchHost) {
		t.Fatalf("refused connection: err = %v, want an error that is not ErrNoSuchHost", err)
	}
}
