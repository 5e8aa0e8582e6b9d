package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// PassphraseEnv holds the passphrase of encrypted private keys for non-interactive runs.
const PassphraseEnv = "PRIVCLOUD_SSH_KEY_PASSPHRASE"

// Credentials builds SSH authentication for hosts. Keys are parsed once per file however many hosts share
// them, and a passphrase is asked for at most once per key.
type Credentials struct {
	// Getenv reads environment variables (os.Getenv in the CLI).
	Getenv func(string) string
	// Prompt asks for a secret on a terminal; nil when there is none (CI).
	Prompt func(question string) ([]byte, error)
	// Password, when set, is offered as password and keyboard-interactive authentication.
	Password string

	mu      sync.Mutex
	signers map[string]keyResult
	agent   agent.ExtendedAgent
	agentOK bool
}

type keyResult struct {
	signer xssh.Signer
	pub    xssh.PublicKey // set when only the public half is available (the key lives in the agent)
	err    error
}

// AuthError is a host that refused every credential offered. It is never retried.
type AuthError struct {
	User, Address string
	Err           error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("authentication as %s at %s failed: %v", e.User, e.Address, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Methods returns the authentication methods for one host: its key (from the file, or from ssh-agent limited
// to that key's identity, as IdentitiesOnly does), then the password when one is configured.
func (c *Credentials) Methods(keyPath string) ([]xssh.AuthMethod, error) {
	var methods []xssh.AuthMethod
	if keyPath != "" {
		kr := c.key(keyPath)
		switch {
		case kr.err != nil:
			return nil, kr.err
		case kr.signer != nil:
			methods = append(methods, xssh.PublicKeys(kr.signer))
		default:
			s, err := c.agentSigner(kr.pub, keyPath)
			if err != nil {
				return nil, err
			}
			methods = append(methods, xssh.PublicKeys(s))
		}
	}
	if c.Password != "" {
		pw := c.Password
		methods = append(methods, xssh.Password(pw), xssh.KeyboardInteractive(
			func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	if len(methods) == 0 {
		return nil, errors.New("no SSH credentials: set sshKeyPath, or a password through spec.ssh.passwordEnv")
	}
	return methods, nil
}

func (c *Credentials) key(path string) keyResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kr, ok := c.signers[path]; ok {
		return kr
	}
	kr := c.loadKey(path)
	if c.signers == nil {
		c.signers = map[string]keyResult{}
	}
	c.signers[path] = kr
	return kr
}

func (c *Credentials) loadKey(path string) keyResult {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		// The private key may live only in ssh-agent: its public half identifies it.
		pubData, perr := os.ReadFile(path + ".pub")
		if perr != nil {
			return keyResult{err: fmt.Errorf("private key %s does not exist (nor %s.pub for a key held by ssh-agent)", path, path)}
		}
		pub, _, _, _, perr := xssh.ParseAuthorizedKey(pubData)
		if perr != nil {
			return keyResult{err: fmt.Errorf("public key %s.pub: %w", path, perr)}
		}
		return keyResult{pub: pub}
	}
	if err != nil {
		return keyResult{err: fmt.Errorf("private key: %w", err)}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return keyResult{err: fmt.Errorf("private key %s is readable by others (mode %04o): chmod 600 %s", path, fi.Mode().Perm(), path)}
	}
	signer, err := xssh.ParsePrivateKey(data)
	var missing *xssh.PassphraseMissingError
	if errors.As(err, &missing) {
		pass, perr := c.passphrase(path)
		if perr != nil {
			return keyResult{err: perr}
		}
		signer, err = xssh.ParsePrivateKeyWithPassphrase(data, pass)
		clear(pass)
		if err != nil {
			return keyResult{err: fmt.Errorf("private key %s: wrong passphrase? %w", path, err)}
		}
	}
	if err != nil {
		return keyResult{err: fmt.Errorf("private key %s: %w", path, err)}
	}
	return keyResult{signer: signer}
}

func (c *Credentials) passphrase(path string) ([]byte, error) {
	if c.Getenv != nil {
		if p := c.Getenv(PassphraseEnv); p != "" {
			return []byte(p), nil
		}
	}
	if c.Prompt == nil {
		return nil, fmt.Errorf("private key %s is encrypted: set %s (no terminal to ask on)", path, PassphraseEnv)
	}
	return c.Prompt(fmt.Sprintf("Passphrase for %s: ", path))
}

// agentSigner returns the agent's signer for pub only: other identities the agent holds are never offered,
// so a host sees one key and MaxAuthTries is not exhausted.
func (c *Credentials) agentSigner(pub xssh.PublicKey, path string) (xssh.Signer, error) {
	c.mu.Lock()
	if !c.agentOK {
		sock := ""
		if c.Getenv != nil {
			sock = c.Getenv("SSH_AUTH_SOCK")
		}
		if sock == "" {
			c.mu.Unlock()
			return nil, fmt.Errorf("private key %s is not on disk and SSH_AUTH_SOCK is not set: no agent to ask", path)
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("ssh-agent at %s: %w", sock, err)
		}
		c.agent, c.agentOK = agent.NewClient(conn), true
	}
	a := c.agent
	c.mu.Unlock()
	signers, err := a.Signers()
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: %w", err)
	}
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("ssh-agent does not hold the key of %s.pub (%s)", path, xssh.FingerprintSHA256(pub))
}
