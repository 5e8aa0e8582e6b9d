package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"
)

// A rotation through its three stages: trust makes a new CA beside each old one and only the kubeconfigs (which
// carry the CA file) are reissued; switch makes the new CAs sign and every leaf and kubeconfig is reissued from
// them, keeping the leaves' keys; retire leaves the new CAs alone. Each stage run again changes nothing, and a
// switch stopped midway completes.
func TestCARotationStages(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	old := map[string]*x509.Certificate{}
	for _, ca := range RotatableCAs {
		old[ca] = loadCert(t, s.CertPath(ca))
	}
	oldLeafKey, _ := os.ReadFile(s.KeyPath("apiserver/cp1"))
	now := time.Now()

	if err := TrustNewCAs(s, tr, RotatableCAs, now, GenerateKey); err != nil {
		t.Fatal(err)
	}
	trusted := map[string][]byte{}
	for _, ca := range RotatableCAs {
		trusted[ca], _ = os.ReadFile(s.CertPath(ca))
		certs, _ := ParseCerts(trusted[ca])
		if len(certs) != 2 || !certs[0].Equal(old[ca]) || certs[1].Equal(old[ca]) {
			t.Fatalf("%s after trust: want the old CA first and a new one", ca)
		}
	}
	r := ensure(t, s, tr, Options{})
	signer := func() *x509.Certificate {
		t.Helper()
		certs, err := ParseCerts(must(os.ReadFile(s.SignerCertPath(ClusterCA))))
		if err != nil || len(certs) != 1 {
			t.Fatalf("the signer file holds %d certificates (%v): the controller-manager takes exactly one", len(certs), err)
		}
		return certs[0]
	}
	if !signer().Equal(old[ClusterCA]) {
		t.Error("after trust, the signer file is not the old CA, which still signs")
	}
	for _, o := range r.Outcomes {
		switch {
		case strings.HasPrefix(o.Name, "kubeconfig/") && (o.Action != Reissued || !strings.Contains(o.Reason, "CA bundle")):
			t.Errorf("trust: %s %s (%s), want reissued for the new CA bundle", o.Name, o.Action, o.Reason)
		case !strings.HasPrefix(o.Name, "kubeconfig/") && o.Action != Reused:
			t.Errorf("trust: %s %s (%s), want reused: the old CA still signs", o.Name, o.Action, o.Reason)
		}
	}
	if err := TrustNewCAs(s, tr, RotatableCAs, now, GenerateKey); err != nil {
		t.Fatal(err)
	}
	for _, ca := range RotatableCAs {
		if again, _ := os.ReadFile(s.CertPath(ca)); !bytes.Equal(again, trusted[ca]) {
			t.Errorf("trust run again made another CA for %s", ca)
		}
	}

	// a switch that stopped after writing the cluster CA's key completes
	next, _ := os.ReadFile(s.nextKeyPath(ClusterCA))
	certs, _ := ParseCerts(trusted[ClusterCA])
	os.WriteFile(s.CertPath(ClusterCA), append(encodeCert(certs[1]), encodeCert(certs[0])...), 0o644)
	os.WriteFile(s.KeyPath(ClusterCA), next, 0o600)
	for range 2 {
		if err := SwitchToNewCAs(s, RotatableCAs); err != nil {
			t.Fatal(err)
		}
	}
	for _, ca := range RotatableCAs {
		certs, _ := ParseCerts(must(os.ReadFile(s.CertPath(ca))))
		if len(certs) != 2 || certs[0].Equal(old[ca]) || !certs[1].Equal(old[ca]) {
			t.Errorf("%s after switch: want the new CA first, the old second", ca)
		}
		if _, err := os.Stat(s.nextKeyPath(ca)); !os.IsNotExist(err) {
			t.Errorf("%s: the next key is left after the switch", ca)
		}
	}
	r = ensure(t, s, tr, Options{})
	if signer().Equal(old[ClusterCA]) {
		t.Error("after the switch, the signer file is still the old CA")
	}
	for _, o := range r.Outcomes {
		isCA := o.Name == ClusterCA || o.Name == FrontProxyCA || o.Name == EtcdCA || o.Name == ServiceAccountKey
		if !isCA && o.Action != Reissued {
			t.Errorf("switch: %s %s, want reissued from the new CA", o.Name, o.Action)
		}
	}
	leaf := loadCert(t, s.CertPath("apiserver/cp1"))
	if err := leaf.CheckSignatureFrom(old[ClusterCA]); err == nil {
		t.Error("the API server's certificate is still the old CA's")
	}
	if key, _ := os.ReadFile(s.KeyPath("apiserver/cp1")); !bytes.Equal(key, oldLeafKey) {
		t.Error("the switch replaced a sound leaf key")
	}
	if r := ensure(t, s, tr, Options{}); r.Changed() != 0 {
		t.Errorf("a second run after the switch changed %d entries", r.Changed())
	}

	if err := RetireOldCAs(s, RotatableCAs); err != nil {
		t.Fatal(err)
	}
	for _, ca := range RotatableCAs {
		certs, _ := ParseCerts(must(os.ReadFile(s.CertPath(ca))))
		if len(certs) != 1 || certs[0].Equal(old[ca]) {
			t.Errorf("%s after retire: want the new CA alone", ca)
		}
	}
	r = ensure(t, s, tr, Options{})
	for _, o := range r.Outcomes {
		if strings.HasPrefix(o.Name, "kubeconfig/") != (o.Action == Reissued) {
			t.Errorf("retire: %s %s (%s): only kubeconfigs change, for the CA bundle", o.Name, o.Action, o.Reason)
		}
	}
	// every leaf verifies against the new CAs alone
	for _, name := range []string{"apiserver/cp1", "etcd/peer-cp2", "front-proxy-client", "kubelet/w1"} {
		ca := map[string]string{"apiserver/cp1": ClusterCA, "etcd/peer-cp2": EtcdCA, "front-proxy-client": FrontProxyCA, "kubelet/w1": ClusterCA}[name]
		if _, err := loadCert(t, s.CertPath(name)).Verify(x509.VerifyOptions{Roots: pool(t, s, ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s after the rotation: %v", name, err)
		}
	}
}

func TestCARotationRecord(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	os.MkdirAll(s.Dir+"/pki", 0o700)
	if r, err := LoadCARotation(s); r != nil || err != nil {
		t.Fatalf("no rotation: %v %v", r, err)
	}
	want := &CARotation{CAs: RotatableCAs, Stage: RotationTrust, Started: time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)}
	if err := SaveCARotation(s, want); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(s.CARotationPath()); fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %o", fi.Mode().Perm())
	}
	got, err := LoadCARotation(s)
	if err != nil || got.Stage != RotationTrust || !got.Started.Equal(want.Started) || len(got.CAs) != 3 {
		t.Errorf("record %+v %v", got, err)
	}
	if err := SaveCARotation(s, nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := LoadCARotation(s); r != nil {
		t.Error("the finished rotation's record stays")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The service-account key through its stages: trust lists a new public key after the signing one's and keeps
// the key (Ensure reuses the pair, as sa.pub still lists sa.key's public key); switch makes the new key sign
// with both listed, the new first; retire lists the new one alone. Each stage run again changes nothing, a
// switch stopped before its last step completes, and the key IDs name the signing key and the other.
func TestServiceAccountKeyRotation(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	oldKey := must(os.ReadFile(s.KeyPath(ServiceAccountKey)))
	oldPub := must(os.ReadFile(s.PublicKeyPath(ServiceAccountKey)))
	oldID, others, err := ServiceAccountKeyIDs(s)
	if err != nil || len(others) != 0 || len(oldID) != 43 {
		t.Fatalf("key IDs before the rotation: %q %v %v", oldID, others, err)
	}
	saOutcome := func() Outcome {
		t.Helper()
		for _, o := range ensure(t, s, tr, Options{}).Outcomes {
			if o.Name == ServiceAccountKey {
				return o
			}
		}
		t.Fatal("no outcome for the service-account key")
		return Outcome{}
	}

	for range 2 {
		if err := TrustNewServiceAccountKey(s, tr, GenerateKey); err != nil {
			t.Fatal(err)
		}
	}
	trusted := must(os.ReadFile(s.PublicKeyPath(ServiceAccountKey)))
	if !bytes.HasPrefix(trusted, oldPub) || bytes.Count(trusted, []byte("BEGIN PUBLIC KEY")) != 2 {
		t.Fatalf("sa.pub after trust (run twice): want the signing key's first and one new one:\n%s", trusted)
	}
	if o := saOutcome(); o.Action != Reused {
		t.Fatalf("Ensure after trust: %s (%s), want the pair reused", o.Action, o.Reason)
	}
	if !bytes.Equal(must(os.ReadFile(s.KeyPath(ServiceAccountKey))), oldKey) {
		t.Fatal("trust changed the signing key")
	}
	signing, others, _ := ServiceAccountKeyIDs(s)
	if signing != oldID || len(others) != 1 {
		t.Fatalf("key IDs after trust: signing %q others %v", signing, others)
	}
	newID := others[0]
	if err := RetireOldServiceAccountKey(s); err == nil {
		t.Fatal("retire before switch was accepted")
	}

	if err := SwitchToNewServiceAccountKey(s); err != nil {
		t.Fatal(err)
	}
	switched := must(os.ReadFile(s.PublicKeyPath(ServiceAccountKey)))
	if !bytes.HasSuffix(switched, oldPub) || bytes.Count(switched, []byte("BEGIN PUBLIC KEY")) != 2 {
		t.Fatalf("sa.pub after switch: want the new key's first and the old one's:\n%s", switched)
	}
	if signing, others, _ := ServiceAccountKeyIDs(s); signing != newID || len(others) != 1 || others[0] != oldID {
		t.Fatalf("key IDs after switch: signing %q others %v, want %q and [%q]", signing, others, newID, oldID)
	}
	if _, err := os.Stat(s.nextKeyPath(ServiceAccountKey)); !os.IsNotExist(err) {
		t.Fatalf("the next key stays after the switch: %v", err)
	}
	if o := saOutcome(); o.Action != Reused {
		t.Fatalf("Ensure after switch: %s (%s), want the pair reused", o.Action, o.Reason)
	}
	// a switch stopped after writing the key but before removing the next one completes
	newKey := must(os.ReadFile(s.KeyPath(ServiceAccountKey)))
	if err := os.WriteFile(s.nextKeyPath(ServiceAccountKey), newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SwitchToNewServiceAccountKey(s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(must(os.ReadFile(s.PublicKeyPath(ServiceAccountKey))), switched) || !bytes.Equal(must(os.ReadFile(s.KeyPath(ServiceAccountKey))), newKey) {
		t.Fatal("a switch run again after its key was written changed the files")
	}

	for range 2 {
		if err := RetireOldServiceAccountKey(s); err != nil {
			t.Fatal(err)
		}
	}
	retired := must(os.ReadFile(s.PublicKeyPath(ServiceAccountKey)))
	if bytes.Count(retired, []byte("BEGIN PUBLIC KEY")) != 1 || !bytes.HasPrefix(switched, retired) {
		t.Fatalf("sa.pub after retire: want the new key's alone:\n%s", retired)
	}
	if o := saOutcome(); o.Action != Reused {
		t.Fatalf("Ensure after retire: %s (%s), want the pair reused", o.Action, o.Reason)
	}
	if fi, err := os.Stat(s.KeyPath(ServiceAccountKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sa.key after the rotation: %v %v", fi, err)
	}
}
