package pki

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A CA is replaced in three stages that never break trust, recorded in the state directory so an interrupted
// rotation resumes where it stopped:
//
//	trust:  a new CA is made beside the old one; the CA file holds the old certificate (still signing, first)
//	        and the new one, and every host trusts both once the file is sent
//	switch: the new CA signs: its key replaces the old one and its certificate comes first in the file (the
//	        controller-manager signs with the first certificate of its file); Ensure then reissues every leaf
//	        and kubeconfig the new certificate did not sign
//	retire: the CA file holds the new certificate alone
//
// Each stage rewrites the files whole from what the store holds, so running a stage again changes nothing.
const (
	RotationTrust  = "trust"
	RotationSwitch = "switch"
	RotationRetire = "retire"
)

// RotatableCAs are the CAs a rotation replaces, in the order they are handled.
var RotatableCAs = []string{ClusterCA, FrontProxyCA, EtcdCA}

// CARotation is the record of a rotation under way.
type CARotation struct {
	CAs      []string  `json:"cas"`
	Stage    string    `json:"stage"` // the last stage whose files the store holds
	Started  time.Time `json:"started"`
	Switched time.Time `json:"switched,omitzero"`
	// ServiceAccountKey: the service-account signing key rotates with the CAs
	ServiceAccountKey bool `json:"serviceAccountKey,omitempty"`
}

// CARotationPath is where the record of a rotation under way is kept.
func (s Store) CARotationPath() string { return filepath.Join(s.Dir, "pki", "ca-rotation.json") }

// nextKeyPath holds a new CA's key between the trust and switch stages.
func (s Store) nextKeyPath(name string) string { return filepath.Join(s.Dir, "pki", name+".next.key") }

// LoadCARotation returns the rotation under way, or nil.
func LoadCARotation(s Store) (*CARotation, error) {
	data, err := read(s.CARotationPath())
	if err != nil || data == nil {
		return nil, err
	}
	var r CARotation
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", s.CARotationPath(), err)
	}
	return &r, nil
}

// SaveCARotation records r; a nil r ends the rotation.
func SaveCARotation(s Store, r *CARotation) error {
	if r == nil {
		if err := os.Remove(s.CARotationPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return write(s.CARotationPath(), append(data, '\n'), 0o600)
}

// caFiles is a CA's certificates and key as the store holds them.
type caFiles struct {
	certs   []*x509.Certificate
	key     crypto.Signer
	signing *x509.Certificate // the certificate of key
	next    crypto.Signer     // the new CA's key between trust and switch
}

func loadCAFiles(s Store, name string) (*caFiles, error) {
	certPEM, err := read(s.CertPath(name))
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(s.KeyPath(name))
	if err != nil {
		return nil, err
	}
	if certPEM == nil || keyPEM == nil {
		return nil, fmt.Errorf("%s or its key is missing: a rotation needs the CA privcloud made (not with spec.pki.externalCA)", s.CertPath(name))
	}
	f := &caFiles{}
	if f.certs, err = ParseCerts(certPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", s.CertPath(name), err)
	}
	if f.key, err = parseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", s.KeyPath(name), err)
	}
	f.signing = f.certOf(f.key)
	if f.signing == nil {
		return nil, fmt.Errorf("%s does not belong to any certificate in %s", s.KeyPath(name), s.CertPath(name))
	}
	if nextPEM, err := read(s.nextKeyPath(name)); err != nil {
		return nil, err
	} else if nextPEM != nil {
		if f.next, err = parseKey(nextPEM); err != nil {
			return nil, fmt.Errorf("%s: %w", s.nextKeyPath(name), err)
		}
	}
	return f, nil
}

func (f *caFiles) certOf(key crypto.Signer) *x509.Certificate {
	i := slices.IndexFunc(f.certs, func(c *x509.Certificate) bool { return keyMatches(key, c.PublicKey) })
	if i < 0 {
		return nil
	}
	return f.certs[i]
}

// TrustNewCAs makes a new CA beside each named one (keeping one an interrupted run already made) and writes
// each CA file as the signing certificate followed by the new one. Ensure afterwards reissues the kubeconfigs,
// which carry the CA file.
func TrustNewCAs(s Store, t *Tree, names []string, now time.Time, keys func(Algorithm) (crypto.Signer, error)) error {
	for _, name := range names {
		spec := t.ca(name)
		if spec == nil {
			return fmt.Errorf("the cluster has no %s CA", name)
		}
		f, err := loadCAFiles(s, name)
		if err != nil {
			return err
		}
		var next *x509.Certificate
		if f.next != nil {
			next = f.certOf(f.next)
		} else if f.next, err = keys(t.Algorithm); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		if next == nil {
			e := &ensurer{now: now}
			if next, err = e.sign(*spec, f.next, nil, t.CAValidity); err != nil {
				return err
			}
		}
		keyPEM, err := encodeKey(f.next)
		if err != nil {
			return err
		}
		// the key first: the file that names its certificate comes after it
		if err := write(s.nextKeyPath(name), keyPEM, 0o600); err != nil {
			return err
		}
		if err := write(s.CertPath(name), slices.Concat(encodeCert(f.signing), encodeCert(next)), 0o644); err != nil {
			return err
		}
	}
	return syncPKIDir(s)
}

// SwitchToNewCAs makes each named CA's new key the signing one, its certificate first in the file and the old
// one second; Ensure afterwards reissues every leaf and kubeconfig from it. A CA already switched is left.
func SwitchToNewCAs(s Store, names []string) error {
	for _, name := range names {
		f, err := loadCAFiles(s, name)
		if err != nil {
			return err
		}
		if f.next == nil {
			continue // switched already (the next key is removed last)
		}
		if keyMatches(f.next, f.key.Public()) { // stopped before removing the next key
			if err := os.Remove(s.nextKeyPath(name)); err != nil {
				return err
			}
			continue
		}
		next := f.certOf(f.next)
		if next == nil {
			return fmt.Errorf("%s holds no certificate of %s: run the trust stage again", s.CertPath(name), s.nextKeyPath(name))
		}
		keyPEM, err := encodeKey(f.next)
		if err != nil {
			return err
		}
		// the file first, listing both: while the key is not yet renamed, the old one still finds its certificate
		if err := write(s.CertPath(name), slices.Concat(encodeCert(next), encodeCert(f.signing)), 0o644); err != nil {
			return err
		}
		if err := write(s.KeyPath(name), keyPEM, 0o600); err != nil {
			return err
		}
		if err := os.Remove(s.nextKeyPath(name)); err != nil {
			return err
		}
	}
	return syncPKIDir(s)
}

// RetireOldCAs leaves each named CA file with its signing certificate alone.
func RetireOldCAs(s Store, names []string) error {
	for _, name := range names {
		f, err := loadCAFiles(s, name)
		if err != nil {
			return err
		}
		if f.next != nil {
			return fmt.Errorf("%s has not switched to its new CA yet (%s exists)", name, s.nextKeyPath(name))
		}
		if err := write(s.CertPath(name), encodeCert(f.signing), 0o644); err != nil {
			return err
		}
	}
	return syncPKIDir(s)
}

// syncPKIDir makes the renames of a rotation stage in the store's pki folder durable.
func syncPKIDir(s Store) error { return syncDirs(map[string]bool{filepath.Join(s.Dir, "pki"): true}) }

// ca is the tree's CA of that name.
func (t *Tree) ca(name string) *Cert {
	for i := range t.CAs {
		if t.CAs[i].Name == name {
			return &t.CAs[i]
		}
	}
	return nil
}

// SigningCert is the certificate of a CA file that belongs to the CA's key: the one that signs, which a
// rotation puts first, though the file may hold another one beside it.
func SigningCert(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	f := &caFiles{certs: certs}
	if c := f.certOf(key); c != nil {
		return c, nil
	}
	return nil, errors.New("the key belongs to no certificate of the CA file")
}

// The service-account key rotates in the same three stages. sa.pub is the list of public keys the API servers
// accept tokens of (--service-account-key-file takes several); sa.key is the one they sign with:
//
//	trust:  sa.pub holds the signing key's public key and a new key's (the new key waits in sa.next.key)
//	switch: the new key signs; sa.pub still holds both, so tokens signed before keep working until the kubelet
//	        and the controller-manager have replaced them
//	retire: sa.pub holds the new public key alone
//
// As with the CAs, each stage rewrites the files whole from the keys the store holds.

// saFiles is the service-account key pair as the store holds it, with the new key between trust and switch.
type saFiles struct {
	key  crypto.Signer
	pubs []crypto.PublicKey
	next crypto.Signer
}

func loadSAFiles(s Store) (*saFiles, error) {
	keyPEM, err := read(s.KeyPath(ServiceAccountKey))
	if err != nil {
		return nil, err
	}
	pubPEM, err := read(s.PublicKeyPath(ServiceAccountKey))
	if err != nil {
		return nil, err
	}
	if keyPEM == nil || pubPEM == nil {
		return nil, fmt.Errorf("%s or %s is missing (run privcloud init first)", s.KeyPath(ServiceAccountKey), s.PublicKeyPath(ServiceAccountKey))
	}
	f := &saFiles{}
	if f.key, err = parseKey(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", s.KeyPath(ServiceAccountKey), err)
	}
	if f.pubs, err = parsePublicKeys(pubPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", s.PublicKeyPath(ServiceAccountKey), err)
	}
	if nextPEM, err := read(s.nextKeyPath(ServiceAccountKey)); err != nil {
		return nil, err
	} else if nextPEM != nil {
		if f.next, err = parseKey(nextPEM); err != nil {
			return nil, fmt.Errorf("%s: %w", s.nextKeyPath(ServiceAccountKey), err)
		}
	}
	return f, nil
}

// writePublicKeys writes sa.pub as the public keys of keys, in that order.
func writePublicKeys(s Store, keys ...crypto.Signer) error {
	var out []byte
	for _, k := range keys {
		p, err := encodePublicKey(k.Public())
		if err != nil {
			return err
		}
		out = append(out, p...)
	}
	return write(s.PublicKeyPath(ServiceAccountKey), out, 0o644)
}

// TrustNewServiceAccountKey makes a new service-account key (keeping one an interrupted run made) and writes
// sa.pub as the signing key's public key followed by the new one's.
func TrustNewServiceAccountKey(s Store, t *Tree, keys func(Algorithm) (crypto.Signer, error)) error {
	f, err := loadSAFiles(s)
	if err != nil {
		return err
	}
	if f.next == nil {
		if f.next, err = keys(t.Algorithm); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		keyPEM, err := encodeKey(f.next)
		if err != nil {
			return err
		}
		if err := write(s.nextKeyPath(ServiceAccountKey), keyPEM, 0o600); err != nil {
			return err
		}
	}
	if err := writePublicKeys(s, f.key, f.next); err != nil {
		return err
	}
	return syncPKIDir(s)
}

// SwitchToNewServiceAccountKey makes the new key the signing one; sa.pub keeps both, the new first. A key
// already switched is left.
func SwitchToNewServiceAccountKey(s Store) error {
	f, err := loadSAFiles(s)
	if err != nil {
		return err
	}
	if f.next == nil {
		return nil // switched already (the next key is removed last)
	}
	if !keyMatches(f.next, f.key.Public()) {
		old := f.key
		if !slices.ContainsFunc(f.pubs, func(p crypto.PublicKey) bool { return keyMatches(f.next, p) }) {
			return fmt.Errorf("%s does not list the key of %s: run the trust stage again", s.PublicKeyPath(ServiceAccountKey), s.nextKeyPath(ServiceAccountKey))
		}
		keyPEM, err := encodeKey(f.next)
		if err != nil {
			return err
		}
		// sa.pub first, listing both: whichever key signs while the other file is not yet written verifies
		if err := writePublicKeys(s, f.next, old); err != nil {
			return err
		}
		if err := write(s.KeyPath(ServiceAccountKey), keyPEM, 0o600); err != nil {
			return err
		}
	}
	if err := os.Remove(s.nextKeyPath(ServiceAccountKey)); err != nil {
		return err
	}
	return syncPKIDir(s)
}

// RetireOldServiceAccountKey leaves sa.pub with the signing key's public key alone.
func RetireOldServiceAccountKey(s Store) error {
	f, err := loadSAFiles(s)
	if err != nil {
		return err
	}
	if f.next != nil {
		return fmt.Errorf("the service-account key has not switched yet (%s exists)", s.nextKeyPath(ServiceAccountKey))
	}
	if err := writePublicKeys(s, f.key); err != nil {
		return err
	}
	return syncPKIDir(s)
}

// ServiceAccountKeyIDs are the key IDs of the public keys in sa.pub, as kube-apiserver writes them into the
// header of each token it signs: a token whose kid is not the signing key's was signed by an older key.
func ServiceAccountKeyIDs(s Store) (signing string, others []string, err error) {
	f, err := loadSAFiles(s)
	if err != nil {
		return "", nil, err
	}
	if signing, err = keyID(f.key.Public()); err != nil {
		return "", nil, err
	}
	for _, p := range f.pubs {
		id, err := keyID(p)
		if err != nil {
			return "", nil, err
		}
		if id != signing {
			others = append(others, id)
		}
	}
	return signing, others, nil
}

// keyID is kube-apiserver's key ID of a public key: the unpadded base64url SHA-256 of its PKIX form.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
