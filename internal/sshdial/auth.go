package sshdial

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// ErrAuth means the server refused every key cardshare offered.
var ErrAuth = errors.New("authentication failed")

// passphraseTries is how often a passphrase is asked for, as OpenSSH's
// NumberOfPasswordPrompts default.
const passphraseTries = 3

// authError describes a refused login. It names methods and key files,
// never key material. errors.Is(err, ErrAuth) is true for it.
type authError struct {
	User, Addr string
	// Tried are the methods attempted; Allowed the ones the server offered.
	Tried, Allowed []string
	// Agent is the agent socket consulted ("" = none) and AgentKeys the
	// number of its keys offered.
	Agent     string
	AgentKeys int
	// Files are the identity files offered; Skipped the ones that were not,
	// with the reason.
	Files, Skipped []string
	// Err is x/crypto's error.
	Err error
}

func (e *authError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh authentication as %s to %s failed", e.User, e.Addr)
	if e.Agent != "" {
		fmt.Fprintf(&b, "; agent %s offered %d keys", e.Agent, e.AgentKeys)
	} else {
		b.WriteString("; no agent")
	}
	fmt.Fprintf(&b, "; key files offered: [%s]", strings.Join(e.Files, " "))
	if len(e.Skipped) > 0 {
		fmt.Fprintf(&b, "; skipped: [%s]", strings.Join(e.Skipped, ", "))
	}
	fmt.Fprintf(&b, "; tried %v, server allows %v: %v", e.Tried, e.Allowed, e.Err)
	return b.String()
}

func (e *authError) Is(target error) bool { return target == ErrAuth }
func (e *authError) Unwrap() error        { return e.Err }

// authState gathers the keys for one connection attempt, lazily: nothing
// is read, asked or dialled before the server asks for publickey.
type authState struct {
	t      Target
	prompt func(string) ([]byte, error)
	log    *slog.Logger

	once    sync.Once
	signers []ssh.Signer
	conn    net.Conn // agent connection, open until Dial returns

	mu             sync.Mutex
	started        bool // the server reached user authentication
	tried, allowed []string
	agentKeys      int
	files, skipped []string
}

func (a *authState) config(c *ssh.ClientConfig) {
	c.Auth = []ssh.AuthMethod{ssh.PublicKeysCallback(a.keys)}
	c.AuthCallback = func(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
		a.mu.Lock()
		a.started, a.tried, a.allowed = true, ctx.TriedMethods, ctx.AllowedMethods
		a.mu.Unlock()
		return nil, nil // let x/crypto pick from c.Auth
	}
}

func (a *authState) close() {
	if a.conn != nil {
		a.conn.Close()
	}
}

// err wraps a handshake error as an *authError.
func (a *authState) err(err error) *authError {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &authError{
		User: a.t.User, Addr: a.t.Addr(), Tried: a.tried, Allowed: a.allowed,
		Agent: a.t.IdentityAgent, AgentKeys: a.agentKeys,
		Files: a.files, Skipped: a.skipped, Err: err,
	}
}

func (a *authState) keys() ([]ssh.Signer, error) {
	a.once.Do(a.load)
	return a.signers, nil
}

// load builds the signer list: agent keys first (only those matching an
// identity file when IdentitiesOnly), then identity files whose key the
// agent does not hold. Encrypted files become signers that ask for the
// passphrase only when the server accepts their public key.
func (a *authState) load() {
	var agentSigners []ssh.Signer
	if a.t.IdentityAgent != "" {
		conn, err := dialAgent(a.t.IdentityAgent)
		if err == nil {
			a.conn = conn
			agentSigners, err = agent.NewClient(conn).Signers()
		}
		if err != nil {
			a.skip("agent "+a.t.IdentityAgent, err.Error())
		}
	}
	files := make([]keyFile, 0, len(a.t.IdentityFiles))
	wanted := map[string]bool{}
	for _, path := range a.t.IdentityFiles {
		kf := loadKeyFile(path)
		if kf.err != nil {
			a.skip(path, kf.err.Error())
			continue
		}
		files = append(files, kf)
		if kf.pub != nil {
			wanted[string(kf.pub.Marshal())] = true
		}
	}
	inAgent := map[string]bool{}
	for _, s := range agentSigners {
		k := string(s.PublicKey().Marshal())
		if a.t.IdentitiesOnly && !wanted[k] {
			continue
		}
		inAgent[k] = true
		a.signers = append(a.signers, s)
	}
	a.mu.Lock()
	a.agentKeys = len(a.signers)
	a.mu.Unlock()
	for _, kf := range files {
		switch {
		case kf.pub != nil && inAgent[string(kf.pub.Marshal())]:
			a.log.Debug("identity file key is in the agent", "file", kf.path)
		case kf.signer != nil:
			a.offer(kf.path, kf.signer)
		case kf.pem == nil:
			a.skip(kf.path, "no private key file and not in the agent")
		case a.prompt == nil:
			a.skip(kf.path, "passphrase protected and no terminal to ask")
		case kf.pub != nil:
			a.offer(kf.path, &promptSigner{path: kf.path, pub: kf.pub, pem: kf.pem, prompt: a.prompt})
		default: // legacy PEM encryption hides the public key: ask now
			ps := &promptSigner{path: kf.path, pem: kf.pem, prompt: a.prompt}
			s, err := ps.unlock()
			if err != nil {
				a.skip(kf.path, err.Error())
				continue
			}
			a.offer(kf.path, s)
		}
	}
}

func (a *authState) offer(path string, s ssh.Signer) {
	a.signers = append(a.signers, s)
	a.mu.Lock()
	a.files = append(a.files, path)
	a.mu.Unlock()
}

func (a *authState) skip(path, why string) {
	a.log.Debug("key skipped", "key", path, "reason", why)
	a.mu.Lock()
	a.skipped = append(a.skipped, path+" ("+why+")")
	a.mu.Unlock()
}

// keyFile is an identity file as read from disk.
type keyFile struct {
	path   string
	pub    ssh.PublicKey // nil if unknown (legacy encrypted PEM without .pub)
	signer ssh.Signer    // nil if encrypted or absent
	pem    []byte        // nil if only the .pub exists
	err    error
}

func loadKeyFile(path string) keyFile {
	kf := keyFile{path: path}
	pem, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		kf.err = err
		return kf
	}
	if pem != nil {
		kf.signer, err = ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
			kf.pub = kf.signer.PublicKey()
			return kf
		case errors.As(err, &missing):
			kf.pem, kf.pub = pem, missing.PublicKey
		default:
			kf.err = err
			return kf
		}
	}
	if kf.pub == nil {
		if b, err := os.ReadFile(path + ".pub"); err == nil {
			kf.pub, _, _, _, _ = ssh.ParseAuthorizedKey(b)
		}
	}
	if kf.pub == nil && kf.pem == nil {
		kf.err = errors.New("no private key file and no readable .pub")
	}
	return kf
}

// promptSigner is an encrypted identity file that asks for its passphrase
// the first time it has to sign, i.e. after the server accepted its key.
type promptSigner struct {
	path   string
	pub    ssh.PublicKey
	pem    []byte
	prompt func(string) ([]byte, error)

	mu     sync.Mutex
	signer ssh.Signer
}

var _ ssh.AlgorithmSigner = (*promptSigner)(nil)

func (p *promptSigner) PublicKey() ssh.PublicKey { return p.pub }

func (p *promptSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return p.SignWithAlgorithm(rand, data, "")
}

func (p *promptSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := p.unlock()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return s.Sign(rand, data)
}

func (p *promptSigner) unlock() (ssh.Signer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signer != nil {
		return p.signer, nil
	}
	for range passphraseTries {
		pass, err := p.prompt(fmt.Sprintf("Enter passphrase for key '%s': ", p.path))
		if err != nil {
			return nil, fmt.Errorf("passphrase for %s: %w", p.path, err)
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(p.pem, pass)
		clear(pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("decrypt %s: %w", p.path, err)
		}
		p.signer = s
		return s, nil
	}
	return nil, fmt.Errorf("decrypt %s: %w", p.path, x509.IncorrectPasswordError)
}
