package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyProblem says why a host key was refused.
type HostKeyProblem string

const (
	HostKeyUnknown  HostKeyProblem = "unknown"
	HostKeyChanged  HostKeyProblem = "changed"
	HostKeyRevoked  HostKeyProblem = "revoked"
	HostKeyNotOnPin HostKeyProblem = "not-pinned"
	// HostKeyBadCert is a host certificate no trusted CA vouches for (unknown CA, expired, wrong principal).
	HostKeyBadCert HostKeyProblem = "untrusted-certificate"
)

// HostKeyError is a host key that did not verify. It says what was presented, what was expected and where
// that expectation comes from, and how to proceed.
type HostKeyError struct {
	Address     string
	Problem     HostKeyProblem
	Presented   string   // type and SHA256 fingerprint of the key the host presented
	Known       []string // the expected keys, with the file and line that hold each
	KnownHosts  string   // the file a new key would be recorded in
	ScanCommand string
}

func (e *HostKeyError) Error() string {
	switch e.Problem {
	case HostKeyUnknown:
		return fmt.Sprintf("host key of %s is not known: it presented %s. Check that fingerprint with the host's "+
			"owner, then either add the key to %s (e.g. %s) or re-run with --accept-new-host-keys to record it",
			e.Address, e.Presented, e.KnownHosts, e.ScanCommand)
	case HostKeyRevoked:
		return fmt.Sprintf("host key of %s is REVOKED (%s): it presented %s. Refusing to connect", e.Address,
			strings.Join(e.Known, "; "), e.Presented)
	case HostKeyBadCert:
		return fmt.Sprintf("host certificate of %s is not trusted: %s (presented %s). Add its CA to known_hosts "+
			"as '@cert-authority [host]:port KEY' or check the certificate's validity and principals",
			e.Address, strings.Join(e.Known, "; "), e.Presented)
	case HostKeyNotOnPin:
		return fmt.Sprintf("host key of %s does not match the hostKey pinned in cluster.yaml: it presented %s, "+
			"the pin is %s. Refusing to connect: this may be an attack; if the host was reinstalled, update the pin",
			e.Address, e.Presented, strings.Join(e.Known, "; "))
	}
	return fmt.Sprintf("HOST KEY OF %s HAS CHANGED: it presented %s, but %s. Refusing to connect: this may be "+
		"an attack. If the host was reinstalled, remove the old entry (ssh-keygen -R '%s' -f FILE) after checking "+
		"the new fingerprint", e.Address, e.Presented, strings.Join(e.Known, "; "), knownhosts.Normalize(e.Address))
}

// HostKeys verifies host keys against known_hosts files (plain and hashed entries, @cert-authority and
// @revoked lines) and optional pinned keys. With AcceptNew it records the key of a host it has never seen
// (trust on first use) in the first file; a changed or revoked key is always refused.
type HostKeys struct {
	files     []string
	acceptNew bool

	mu sync.Mutex
	db xssh.HostKeyCallback
	// authorities are the @cert-authority lines: knownhosts reports their keys among a host's known keys,
	// which must not be mistaken for the host's own.
	authorities map[string]bool // "file:line"
	caKeys      map[string]bool // marshalled CA keys
}

// NewHostKeys reads the known_hosts files. Files that do not exist yet are treated as empty; unreadable or
// malformed ones are errors naming the file.
func NewHostKeys(files []string, acceptNew bool) (*HostKeys, error) {
	if len(files) == 0 {
		return nil, errors.New("no known_hosts file configured (spec.ssh.knownHostsFiles)")
	}
	hk := &HostKeys{files: files, acceptNew: acceptNew}
	if err := hk.load(); err != nil {
		return nil, err
	}
	return hk, nil
}

func (hk *HostKeys) load() error {
	var present []string
	for _, f := range hk.files {
		switch _, err := os.Stat(f); {
		case err == nil:
			present = append(present, f)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("known_hosts file %s: %w", f, err)
		}
	}
	if len(present) == 0 {
		hk.db = func(string, net.Addr, xssh.PublicKey) error { return &knownhosts.KeyError{} }
		return nil
	}
	db, err := knownhosts.New(present...)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	hk.db = db
	hk.authorities, hk.caKeys = map[string]bool{}, map[string]bool{}
	for _, f := range present {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("known_hosts file %s: %w", f, err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[0] != "@cert-authority" {
				continue
			}
			hk.authorities[fmt.Sprintf("%s:%d", f, i+1)] = true
			if k, _, _, _, err := xssh.ParseAuthorizedKey([]byte(strings.Join(fields[2:], " "))); err == nil {
				hk.caKeys[string(k.Marshal())] = true
			}
		}
	}
	return nil
}

func (hk *HostKeys) isAuthority(k knownhosts.KnownKey) bool {
	return hk.authorities[fmt.Sprintf("%s:%d", k.Filename, k.Line)]
}

// plainKeys drops the @cert-authority entries from a host's known keys.
func (hk *HostKeys) plainKeys(keys []knownhosts.KnownKey) []knownhosts.KnownKey {
	var out []knownhosts.KnownKey
	for _, k := range keys {
		if !hk.isAuthority(k) {
			out = append(out, k)
		}
	}
	return out
}

// Callback returns the host-key check for address ("host:port"), with pinned ("" for none) as an extra
// anchor: a pinned key must match, and it is trusted even when known_hosts does not list the host yet.
func (hk *HostKeys) Callback(address, pinned string) (xssh.HostKeyCallback, error) {
	var pin xssh.PublicKey
	if pinned != "" {
		k, _, _, _, err := xssh.ParseAuthorizedKey([]byte(pinned))
		if err != nil {
			return nil, fmt.Errorf("pinned host key of %s: %w", address, err)
		}
		pin = k
	}
	return func(hostname string, remote net.Addr, key xssh.PublicKey) error {
		return hk.verify(address, remote, key, pin)
	}, nil
}

func (hk *HostKeys) verify(address string, remote net.Addr, key xssh.PublicKey, pin xssh.PublicKey) error {
	presented := describeKey(key)
	if pin != nil {
		plain := key
		if cert, ok := key.(*xssh.Certificate); ok {
			plain = cert.Key
		}
		if !bytes.Equal(plain.Marshal(), pin.Marshal()) {
			return &HostKeyError{Address: address, Problem: HostKeyNotOnPin, Presented: presented, Known: []string{describeKey(pin)}}
		}
	}
	hk.mu.Lock()
	defer hk.mu.Unlock()
	if !isCert(key) && hk.caKeys[string(key.Marshal())] {
		// knownhosts would match a CA key presented as a plain host key; a CA vouches for others only
		return &HostKeyError{Address: address, Problem: HostKeyChanged, Presented: presented,
			Known: []string{"that key is a certificate authority in known_hosts, not a host key"}}
	}
	err := hk.db(address, remote, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	if errors.As(err, &ke) {
		ke = &knownhosts.KeyError{Want: hk.plainKeys(ke.Want)}
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return &HostKeyError{Address: address, Problem: HostKeyRevoked, Presented: presented,
			Known: []string{fmt.Sprintf("@revoked in %s:%d", re.Revoked.Filename, re.Revoked.Line)}}
	case ke != nil && len(ke.Want) > 0:
		known := make([]string, len(ke.Want))
		for i, w := range ke.Want {
			known[i] = fmt.Sprintf("%s:%d has %s", w.Filename, w.Line, describeKey(w.Key))
		}
		return &HostKeyError{Address: address, Problem: HostKeyChanged, Presented: presented, Known: known}
	case ke != nil && pin != nil:
		return nil // unknown to known_hosts, but it matches the pin
	case ke != nil && hk.acceptNew:
		return hk.record(address, key)
	case ke == nil && isCert(key):
		return &HostKeyError{Address: address, Problem: HostKeyBadCert, Presented: presented, Known: []string{err.Error()}}
	case ke != nil:
		host, port, _ := net.SplitHostPort(address)
		return &HostKeyError{Address: address, Problem: HostKeyUnknown, Presented: presented, KnownHosts: hk.files[0],
			ScanCommand: fmt.Sprintf("ssh-keyscan -p %s %s >> %s", port, host, hk.files[0])}
	}
	return err
}

// record appends the key of a new host to the first known_hosts file, hostname hashed as OpenSSH's
// HashKnownHosts does, then reloads. Callers hold hk.mu, so concurrent connections record each host once.
func (hk *HostKeys) record(address string, key xssh.PublicKey) error {
	if cert, ok := key.(*xssh.Certificate); ok {
		key = cert.Key // the certificate expires; the key is what identifies the host
	}
	file := hk.files[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key of %s: %w", address, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key of %s: %w", address, err)
	}
	line := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(address))}, key)
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return fmt.Errorf("record host key of %s in %s: %w", address, file, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return hk.load()
}

// Algorithms returns the host-key algorithms to offer for address, so the server presents a key privcloud can
// verify instead of one of another type that would look like a changed key. A pinned key ("" for none) puts
// the algorithms of its type first; the others follow, so that a host without a key of that type still
// shows which key it has. Without a pin they follow the order known_hosts lists the host's keys in, a
// @cert-authority line covering the host putting the certificate algorithms at its place; nil (the
// library's defaults) when known_hosts knows nothing of the host.
func (hk *HostKeys) Algorithms(address, pinned string) []string {
	known := hk.knownAlgorithms(address)
	pin, _, _, _, err := xssh.ParseAuthorizedKey([]byte(pinned))
	if pinned == "" || err != nil {
		return known
	}
	return union(algorithmsFor(pin.Type()), known, xssh.SupportedAlgorithms().HostKeys)
}

// knownAlgorithms lists the host-key algorithms of the keys known_hosts has for address, in its order.
func (hk *HostKeys) knownAlgorithms(address string) []string {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	// A probe key that matches nothing makes the database list the keys it knows for the address.
	err := hk.db(address, probeAddr{}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	lists := make([][]string, len(ke.Want))
	for i, w := range ke.Want {
		lists[i] = algorithmsFor(w.Key.Type())
		if hk.isAuthority(w) {
			lists[i] = certAlgorithms // the CA's own type says nothing of the host key it signed
		}
	}
	return union(lists...)
}

// union concatenates lists, keeping the first place of each algorithm.
func union(lists ...[]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, list := range lists {
		for _, a := range list {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

var certAlgorithms = []string{
	xssh.CertAlgoED25519v01, xssh.CertAlgoECDSA256v01, xssh.CertAlgoECDSA384v01, xssh.CertAlgoECDSA521v01,
	xssh.CertAlgoRSASHA512v01, xssh.CertAlgoRSASHA256v01, xssh.CertAlgoSKED25519v01, xssh.CertAlgoSKECDSA256v01,
}

// algorithmsFor maps a key type to the signature algorithms that verify with it, strongest first.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case xssh.KeyAlgoRSA:
		return []string{xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256, xssh.KeyAlgoRSA}
	case xssh.CertAlgoRSAv01:
		return []string{xssh.CertAlgoRSASHA512v01, xssh.CertAlgoRSASHA256v01, xssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

func isCert(k xssh.PublicKey) bool {
	_, ok := k.(*xssh.Certificate)
	return ok
}

func describeKey(k xssh.PublicKey) string {
	if cert, ok := k.(*xssh.Certificate); ok {
		return fmt.Sprintf("%s certificate for %s (key %s)", cert.Key.Type(), strings.Join(cert.ValidPrincipals, ","), xssh.FingerprintSHA256(cert.Key))
	}
	return k.Type() + " " + xssh.FingerprintSHA256(k)
}

type probeKey struct{}

func (probeKey) Type() string                         { return "privcloud-probe" }
func (probeKey) Marshal() []byte                      { return []byte("privcloud-probe") }
func (probeKey) Verify([]byte, *xssh.Signature) error { return errors.New("probe key") }

type probeAddr struct{}

func (probeAddr) Network() string { return "tcp" }
func (probeAddr) String() string  { return "0.0.0.0:0" }
