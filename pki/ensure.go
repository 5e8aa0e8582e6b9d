package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/internal/parallel"
)

// Options adjust Ensure.
type Options struct {
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Keys makes private keys (GenerateKey by default).
	Keys KeyGenerator
	// Renew names entries to reissue whatever their state ("all": every leaf, kubeconfig and the
	// service-account key stays; CAs are never renewed here).
	Renew []string
	// RenewBefore reissues leaves that expire sooner than this.
	RenewBefore time.Duration
	// DryRun decides and reports what would be created or reissued, and writes nothing.
	DryRun bool
}

// Action is what Ensure did with one entry.
type Action string

const (
	Created  Action = "created"
	Reused   Action = "reused"
	Reissued Action = "reissued"
	// Provided is an entry of an external CA: checked, never written.
	Provided Action = "provided"
)

// Outcome is one entry's result.
type Outcome struct {
	Name     string    `json:"name"`
	Action   Action    `json:"action"`
	Reason   string    `json:"reason,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
}

// Result lists every entry of the tree, in table order.
type Result struct {
	Outcomes []Outcome
}

// Changed counts the entries written.
func (r *Result) Changed() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Action == Created || o.Action == Reissued {
			n++
		}
	}
	return n
}

// MissingError is an external-CA tree that lacks entries privcloud cannot sign itself.
type MissingError struct {
	Items []string
}

func (e *MissingError) Error() string {
	return "the CA keys are kept elsewhere (pki.externalCA), so these must be provided, signed by that CA:\n  - " +
		strings.Join(e.Items, "\n  - ")
}

// ExitClass is Config: the operator must provide the files before anything can run.
func (e *MissingError) ExitClass() exitclass.Class { return exitclass.Config }

// authority is a loaded CA: the certificates trusted for it (several during a rotation) and, unless it is
// external, the one that signs with its key.
type authority struct {
	bundle []byte
	pool   *x509.CertPool
	cert   *x509.Certificate
	key    crypto.Signer
	// planned is a CA a dry run would create: it can sign, but nothing verifies against it yet.
	planned bool
}

func (a *authority) canSign() bool { return a.key != nil || a.planned }

// issue is one key to generate and certificate to sign.
type issue struct {
	index int // into outcomes
	cert  Cert
	// key is a leaf's existing key, kept when only its certificate is renewed
	key    crypto.Signer
	kcfg   *Kubeconfig
	isCA   bool
	isSA   bool
	reason string
}

type ensurer struct {
	store    Store
	tree     *Tree
	opts     Options
	now      time.Time
	cas      map[string]*authority
	outcomes []Outcome
	missing  []string
	written  map[string]bool
}

// Ensure makes the store hold a valid tree: it keeps every entry that is valid, signed by its current CA and
// still matches the configuration, creates what is missing and reissues what no longer matches (with the
// reason). Keys are generated in parallel. A second run on an unchanged configuration writes nothing.
func Ensure(store Store, t *Tree, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Keys == nil {
		o.Keys = GenerateKey
	}
	e := &ensurer{store: store, tree: t, opts: o, now: o.Now(), cas: map[string]*authority{}, written: map[string]bool{}}
	// Decide everything first, then make every key in one parallel batch: CAs are signed before the leaves
	// that need them, but their keys are generated alongside.
	jobs, err := e.authorities()
	if err != nil {
		return nil, err
	}
	jobs = append(jobs, e.serviceAccount()...)
	for _, c := range t.Leaves {
		jobs = append(jobs, e.leaf(c)...)
	}
	for i := range t.Kubeconfigs {
		jobs = append(jobs, e.kubeconfig(&t.Kubeconfigs[i])...)
	}
	if len(e.missing) > 0 {
		return nil, &MissingError{Items: e.missing}
	}
	if err := e.run(jobs); err != nil {
		return nil, err
	}
	if err := e.writeSigners(); err != nil {
		return nil, err
	}
	if err := syncDirs(e.written); err != nil {
		return nil, err
	}
	return &Result{Outcomes: e.outcomes}, nil
}

func (e *ensurer) record(name string, a Action, reason string, notAfter time.Time) int {
	e.outcomes = append(e.outcomes, Outcome{Name: name, Action: a, Reason: reason, NotAfter: notAfter})
	return len(e.outcomes) - 1
}

// authorities loads every CA and plans the missing ones, unless the CAs are external. A planned CA signs the
// leaves planned after it; nothing verifies against it yet, so existing leaves of a replaced CA are reissued.
func (e *ensurer) authorities() ([]issue, error) {
	var create []issue
	for _, spec := range e.tree.CAs {
		certPEM, err := read(e.store.CertPath(spec.Name))
		if err != nil {
			return nil, err
		}
		keyPEM, err := read(e.store.KeyPath(spec.Name))
		if err != nil {
			return nil, err
		}
		switch {
		case certPEM == nil && e.tree.ExternalCA:
			e.missing = append(e.missing, e.store.CertPath(spec.Name)+" (the "+spec.Name+" CA certificate)")
		case certPEM == nil:
			create = append(create, issue{index: e.record(spec.Name, Created, "", time.Time{}), cert: spec, isCA: true})
			e.cas[spec.Name] = &authority{pool: x509.NewCertPool(), planned: true}
		default:
			a, err := e.loadAuthority(spec, certPEM, keyPEM)
			if err != nil {
				return nil, err
			}
			e.cas[spec.Name] = a
			action := Reused
			if a.key == nil {
				action = Provided
			}
			e.record(spec.Name, action, "", a.cert.NotAfter)
		}
	}
	return create, nil
}

func (e *ensurer) loadAuthority(spec Cert, certPEM, keyPEM []byte) (*authority, error) {
	path := e.store.CertPath(spec.Name)
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a := &authority{bundle: certPEM, pool: x509.NewCertPool(), cert: certs[0]}
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%s: %q is not a CA certificate", path, c.Subject.CommonName)
		}
		a.pool.AddCert(c)
	}
	if keyPEM == nil {
		if !e.tree.ExternalCA {
			return nil, fmt.Errorf("%s has no key %s: if this CA is kept elsewhere, set spec.pki.externalCA: true", path, e.store.KeyPath(spec.Name))
		}
		return a, nil
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.store.KeyPath(spec.Name), err)
	}
	// The signing certificate is the one the key belongs to; others in the file are still trusted.
	i := slices.IndexFunc(certs, func(c *x509.Certificate) bool { return keyMatches(key, c.PublicKey) })
	if i < 0 {
		return nil, fmt.Errorf("%s does not belong to any certificate in %s", e.store.KeyPath(spec.Name), path)
	}
	a.cert, a.key = certs[i], key
	if e.now.After(a.cert.NotAfter) {
		return nil, fmt.Errorf("%s expired on %s: a new CA must be rotated in", path, a.cert.NotAfter.Format(time.DateOnly))
	}
	return a, nil
}

func (e *ensurer) renewRequested(name string) bool {
	return slices.ContainsFunc(e.opts.Renew, func(r string) bool { return Selects(r, name) })
}

// Selects reports whether a name given to renew ("all", an entry, or a folder of entries such as "apiserver"
// for every API server's certificate) selects the tree entry name.
func Selects(given, name string) bool {
	return given == "all" || given == name || strings.HasPrefix(name, given+"/")
}

// CheckRenewable refuses a name given to renew that selects nothing in the tree, or that is a CA or the
// service-account key: those cannot be renewed in place, as a new one would invalidate everything it signed.
func (t *Tree) CheckRenewable(names []string) error {
	valid := t.Names()
	for _, n := range names {
		if !slices.ContainsFunc(valid, func(name string) bool { return Selects(n, name) }) {
			return fmt.Errorf("no certificate named %q; the names are: all, %s", n, strings.Join(valid, ", "))
		}
		if n == ClusterCA || n == FrontProxyCA || n == EtcdCA || n == ServiceAccountKey {
			return fmt.Errorf("%s cannot be renewed in place: it would invalidate everything it signed", n)
		}
	}
	return nil
}

// serviceAccount keeps a valid sa.key/sa.pub pair or makes one; it is never renewed, as that would
// invalidate every service-account token in the cluster.
func (e *ensurer) serviceAccount() []issue {
	keyPEM, kerr := read(e.store.KeyPath(ServiceAccountKey))
	pubPEM, perr := read(e.store.PublicKeyPath(ServiceAccountKey))
	reason := "missing"
	if kerr == nil && perr == nil && keyPEM != nil {
		if key, err := parseKey(keyPEM); err != nil {
			reason = "unreadable key: " + err.Error()
		} else if pubs, err := parsePublicKeys(pubPEM); err == nil && slices.ContainsFunc(pubs, func(p crypto.PublicKey) bool { return keyMatches(key, p) }) {
			// sa.pub lists the key's public key, and during a rotation the other key's too
			e.record(ServiceAccountKey, Reused, "", time.Time{})
			return nil
		} else {
			reason = "public key does not match"
		}
	}
	action := Created
	if keyPEM != nil {
		action = Reissued
	} else {
		reason = ""
	}
	return []issue{{index: e.record(ServiceAccountKey, action, reason, time.Time{}), isSA: true}}
}

func (e *ensurer) leaf(spec Cert) []issue {
	ca := e.cas[spec.CA]
	reason := e.checkLeaf(spec)
	switch {
	case reason == "":
		return nil
	case !ca.canSign():
		e.missing = append(e.missing, fmt.Sprintf("%s and %s: %s", e.store.CertPath(spec.Name), e.store.KeyPath(spec.Name), reason))
		return nil
	case reason == "missing":
		return []issue{{index: e.record(spec.Name, Created, "", time.Time{}), cert: spec}}
	}
	is := issue{index: e.record(spec.Name, Reissued, reason, time.Time{}), cert: spec}
	// a renewal keeps a sound key, as kubeadm's does: a service that loaded the key once (etcd's keys are
	// systemd credentials, copied at its start) still matches the renewed certificate it reads from disk
	if keyPEM, err := read(e.store.KeyPath(spec.Name)); err == nil && keyPEM != nil && !strings.Contains(reason, "key") {
		if key, err := parseKey(keyPEM); err == nil && algorithmOf(key.Public()) == e.tree.Algorithm {
			is.key = key
		}
	}
	return []issue{is}
}

// checkLeaf returns why a leaf must be (re)issued, or "" when the stored one is good; a good leaf is recorded.
func (e *ensurer) checkLeaf(spec Cert) string {
	certPEM, err := read(e.store.CertPath(spec.Name))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	keyPEM, err := read(e.store.KeyPath(spec.Name))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	if certPEM == nil || keyPEM == nil {
		return "missing"
	}
	certs, err := ParseCerts(certPEM)
	if err != nil {
		return "unreadable certificate: " + err.Error()
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return "unreadable key: " + err.Error()
	}
	if why := e.checkCert(spec.Name, certs[0], key, spec.CA, spec.CommonName, spec.Organization, spec.Usages, spec.DNSNames, spec.IPs); why != "" {
		return why
	}
	action := Reused
	if e.cas[spec.CA].key == nil {
		action = Provided
	}
	e.record(spec.Name, action, "", certs[0].NotAfter)
	return ""
}

func (e *ensurer) kubeconfig(k *Kubeconfig) []issue {
	name := "kubeconfig/" + k.Name
	ca := e.cas[ClusterCA]
	reason := "missing"
	data, err := read(e.store.KubeconfigPath(k.Name))
	switch {
	case err != nil:
		reason = "unreadable: " + err.Error()
	case data != nil:
		p, err := parseKubeconfig(data)
		switch {
		case err != nil:
			reason = "unreadable: " + err.Error()
		case p.server != k.Server:
			reason = fmt.Sprintf("server %s, want %s", p.server, k.Server)
		case !bytes.Equal(p.caBundle, ca.bundle):
			reason = "holds another CA bundle"
		default:
			reason = e.checkCert(name, p.cert, p.key, ClusterCA, k.CommonName, k.Organization,
				[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
			if reason == "" {
				action := Reused
				if ca.key == nil {
					action = Provided
				}
				e.record(name, action, "", p.cert.NotAfter)
				return nil
			}
		}
	}
	switch {
	case !ca.canSign():
		e.missing = append(e.missing, fmt.Sprintf("%s: %s", e.store.KubeconfigPath(k.Name), reason))
		return nil
	case reason == "missing":
		return []issue{{index: e.record(name, Created, "", time.Time{}), kcfg: k}}
	}
	return []issue{{index: e.record(name, Reissued, reason, time.Time{}), kcfg: k}}
}

// checkCert says why a stored certificate no longer serves, or "".
func (e *ensurer) checkCert(name string, c *x509.Certificate, key crypto.Signer, caName, cn string, org []string,
	usages []x509.ExtKeyUsage, dns []string, ips []net.IP) string {
	if e.renewRequested(name) {
		return "renewal requested"
	}
	if !keyMatches(key, c.PublicKey) {
		return "key does not match the certificate"
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: e.cas[caName].pool, KeyUsages: usages, CurrentTime: e.now}); err != nil {
		return "does not verify against the " + caName + " CA: " + err.Error()
	}
	// while a CA is replaced, both are trusted, but what the old one signed is reissued once the new one signs
	if a := e.cas[caName]; a.key != nil && a.cert != nil && c.CheckSignatureFrom(a.cert) != nil {
		return "signed by the " + caName + " CA being replaced"
	}
	if c.Subject.CommonName != cn || !slices.Equal(c.Subject.Organization, org) {
		return fmt.Sprintf("subject %q, want CN=%s O=%v", c.Subject.String(), cn, org)
	}
	if diff := sanDiff(c, dns, ips); diff != "" {
		return "names changed: " + diff
	}
	if e.cas[caName].key != nil {
		if got := algorithmOf(c.PublicKey); got != e.tree.Algorithm {
			return fmt.Sprintf("key is %s, configuration says %s", got, e.tree.Algorithm)
		}
	}
	if e.opts.RenewBefore > 0 && c.NotAfter.Before(e.now.Add(e.opts.RenewBefore)) {
		return "expires " + c.NotAfter.Format(time.DateOnly)
	}
	return ""
}

// sanDiff lists the names to add (+) and remove (-); "" when the certificate has exactly the wanted ones.
func sanDiff(c *x509.Certificate, dns []string, ips []net.IP) string {
	have := map[string]bool{}
	for _, n := range c.DNSNames {
		have[n] = true
	}
	for _, ip := range c.IPAddresses {
		have[ip.String()] = true
	}
	want := map[string]bool{}
	for _, n := range dns {
		want[n] = true
	}
	for _, ip := range ips {
		want[ip.String()] = true
	}
	var diff []string
	for n := range want {
		if !have[n] {
			diff = append(diff, "+"+n)
		}
	}
	for n := range have {
		if !want[n] {
			diff = append(diff, "-"+n)
		}
	}
	sort.Strings(diff)
	return strings.Join(diff, " ")
}

// run generates the keys of jobs in parallel (key generation is the cost: RSA takes tens of milliseconds
// each), then signs and writes each.
func (e *ensurer) run(jobs []issue) error {
	if e.opts.DryRun {
		return nil
	}
	keys := make([]crypto.Signer, len(jobs))
	errs := parallel.ForEach(context.Background(), len(jobs), runtime.GOMAXPROCS(0), func(i int) error {
		if jobs[i].key != nil {
			keys[i] = jobs[i].key
			return nil
		}
		var err error
		keys[i], err = e.opts.Keys(e.tree.Algorithm)
		return err
	})
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
	}
	for i, j := range jobs {
		if err := e.write(j, keys[i]); err != nil {
			return err
		}
	}
	return nil
}

func (e *ensurer) write(j issue, key crypto.Signer) error {
	switch {
	case j.isSA:
		keyPEM, err := encodeKey(key)
		if err != nil {
			return err
		}
		pubPEM, err := encodePublicKey(key.Public())
		if err != nil {
			return err
		}
		return e.writeFiles(map[string][]byte{e.store.KeyPath(ServiceAccountKey): keyPEM}, map[string][]byte{e.store.PublicKeyPath(ServiceAccountKey): pubPEM})
	case j.isCA:
		cert, err := e.sign(j.cert, key, nil, e.tree.CAValidity)
		if err != nil {
			return err
		}
		e.outcomes[j.index].NotAfter = cert.NotAfter
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		e.cas[j.cert.Name] = &authority{bundle: encodeCert(cert), pool: pool, cert: cert, key: key}
		return e.writeCertAndKey(j.cert.Name, cert, key)
	case j.kcfg != nil:
		ca := e.cas[ClusterCA]
		spec := Cert{CommonName: j.kcfg.CommonName, Organization: j.kcfg.Organization, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		cert, err := e.sign(spec, key, ca, e.tree.CertValidity)
		if err != nil {
			return err
		}
		e.outcomes[j.index].NotAfter = cert.NotAfter
		data, err := renderKubeconfig(e.tree.Cluster, j.kcfg.CommonName, j.kcfg.Server, ca.bundle, cert, key)
		if err != nil {
			return err
		}
		return e.writeFiles(map[string][]byte{e.store.KubeconfigPath(j.kcfg.Name): data}, nil)
	default:
		cert, err := e.sign(j.cert, key, e.cas[j.cert.CA], e.tree.CertValidity)
		if err != nil {
			return err
		}
		e.outcomes[j.index].NotAfter = cert.NotAfter
		return e.writeCertAndKey(j.cert.Name, cert, key)
	}
}

// writeSigners keeps beside each CA file the certificate of the CA's key alone (SignerCertPath).
func (e *ensurer) writeSigners() error {
	if e.opts.DryRun {
		return nil
	}
	for name, a := range e.cas {
		if a.key == nil || a.cert == nil {
			continue
		}
		want := encodeCert(a.cert)
		if have, err := read(e.store.SignerCertPath(name)); err != nil || bytes.Equal(have, want) {
			if err != nil {
				return err
			}
			continue
		}
		if err := e.writeFiles(nil, map[string][]byte{e.store.SignerCertPath(name): want}); err != nil {
			return err
		}
	}
	return nil
}

func (e *ensurer) writeCertAndKey(name string, cert *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// the key first: a certificate never stands next to a key it does not belong to for long
	return e.writeFiles(map[string][]byte{e.store.KeyPath(name): keyPEM}, map[string][]byte{e.store.CertPath(name): encodeCert(cert)})
}

// writeFiles writes secrets (0600) then public files (0644).
func (e *ensurer) writeFiles(secret, public map[string][]byte) error {
	for _, set := range []struct {
		files map[string][]byte
		mode  os.FileMode
	}{{secret, 0o600}, {public, 0o644}} {
		for path, data := range set.files {
			if err := write(path, data, set.mode); err != nil {
				return err
			}
			e.written[filepath.Dir(path)] = true
		}
	}
	return nil
}

// sign makes a certificate for spec's subject with key's public half, signed by ca (self-signed when nil).
func (e *ensurer) sign(spec Cert, key crypto.Signer, ca *authority, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	// Backdated a little so hosts whose clocks lag slightly accept a certificate made this instant.
	notBefore := e.now.Add(-5 * time.Minute).UTC()
	notAfter := e.now.Add(validity).UTC()
	usage := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     usage,
		ExtKeyUsage:  spec.Usages,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	parent, signer := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, signer = ca.cert, ca.key
		if notAfter.After(ca.cert.NotAfter) {
			tmpl.NotAfter = ca.cert.NotAfter // a leaf never outlives its CA
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", spec.Name, err)
	}
	return x509.ParseCertificate(der)
}
