package pki

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// cluster is three control planes (stacked etcd) and three workers.
func cluster(t *testing.T) *api.Cluster {
	t.Helper()
	c := &api.Cluster{Metadata: api.ObjectMeta{Name: "lab"}, Spec: api.ClusterSpec{Hosts: []api.Host{
		{Name: "cp1", Address: "10.77.0.11", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "cp2", Address: "10.77.0.12", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "cp3", Address: "10.77.0.13", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "w1", Address: "10.77.0.21", Roles: []api.Role{api.RoleWorker}},
		{Name: "w2", Address: "10.77.0.22", Roles: []api.Role{api.RoleWorker}},
		{Name: "w3", Address: "10.77.0.23", Roles: []api.Role{api.RoleWorker}},
	}}}
	api.SetDefaults(c)
	c.Spec.ControlPlaneEndpoint = "api.lab.example:6443"
	if err := api.Validate(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func tree(t *testing.T, c *api.Cluster) *Tree {
	t.Helper()
	tr, err := TreeFor(c)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func ensure(t *testing.T, s Store, tr *Tree, o Options) *Result {
	t.Helper()
	r, err := Ensure(s, tr, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func pool(t *testing.T, s Store, ca string) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(loadCert(t, s.CertPath(ca)))
	return p
}

func TestTreeVerifiesWithExactUsages(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	r := ensure(t, s, tr, Options{})
	if r.Changed() != len(tr.Names()) {
		t.Errorf("first run wrote %d entries, want all %d", r.Changed(), len(tr.Names()))
	}
	for _, c := range tr.Leaves {
		cert := loadCert(t, s.CertPath(c.Name))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, s, c.CA), KeyUsages: c.Usages}); err != nil {
			t.Errorf("%s does not verify against %s for %v: %v", c.Name, c.CA, c.Usages, err)
		}
		if !slices.Equal(cert.ExtKeyUsage, c.Usages) {
			t.Errorf("%s: ext key usages %v, want exactly %v", c.Name, cert.ExtKeyUsage, c.Usages)
		}
		if cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign != 0 {
			t.Errorf("%s is a leaf but may sign certificates", c.Name)
		}
		// a client certificate must not pass as a server one, and the reverse
		wrong := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if !slices.Contains(c.Usages, x509.ExtKeyUsageServerAuth) {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, s, c.CA), KeyUsages: wrong}); err == nil {
				t.Errorf("%s (client only) verifies for server auth", c.Name)
			}
		}
		// signed by its own CA only
		for _, other := range []string{ClusterCA, FrontProxyCA, EtcdCA} {
			if other == c.CA {
				continue
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, s, other), KeyUsages: c.Usages}); err == nil {
				t.Errorf("%s verifies against %s too", c.Name, other)
			}
		}
	}
	for _, ca := range tr.CAs {
		cert := loadCert(t, s.CertPath(ca.Name))
		if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s is not a usable CA", ca.Name)
		}
	}
	for _, k := range tr.Kubeconfigs {
		data, _ := os.ReadFile(s.KubeconfigPath(k.Name))
		p, err := parseKubeconfig(data)
		if err != nil {
			t.Fatalf("%s: %v", k.Name, err)
		}
		if _, err := p.cert.Verify(x509.VerifyOptions{Roots: pool(t, s, ClusterCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("kubeconfig %s: %v", k.Name, err)
		}
		if p.cert.Subject.CommonName != k.CommonName || !slices.Equal(p.cert.Subject.Organization, k.Organization) || p.server != k.Server {
			t.Errorf("kubeconfig %s: CN=%s O=%v server=%s", k.Name, p.cert.Subject.CommonName, p.cert.Subject.Organization, p.server)
		}
	}
	kubelet, _ := os.ReadFile(s.KubeconfigPath("kubelet-w2"))
	p, _ := parseKubeconfig(kubelet)
	if p.cert.Subject.CommonName != "system:node:w2" || p.cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet identity %v", p.cert.Subject)
	}
}

func names(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

func TestSANs(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	c := cluster(t)
	c.Spec.PKI.ExtraSANs = []string{"k8s.corp.example", "192.0.2.10"}
	ensure(t, s, tree(t, c), Options{})
	// each API server's certificate names its own host, not the other control planes
	want := []string{"10.77.0.12", "10.96.0.1", "127.0.0.1", "192.0.2.10", "api.lab.example",
		"cp2", "k8s.corp.example", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if got := names(loadCert(t, s.CertPath("apiserver/cp2"))); !slices.Equal(got, want) {
		t.Errorf("apiserver/cp2 SANs\n got %v\nwant %v", got, want)
	}
	want = []string{"10.77.0.12", "127.0.0.1", "::1", "cp2", "localhost"}
	for _, n := range []string{"etcd/server-cp2", "etcd/peer-cp2"} {
		if got := names(loadCert(t, s.CertPath(n))); !slices.Equal(got, want) {
			t.Errorf("%s SANs %v, want %v", n, got, want)
		}
	}
	if got := names(loadCert(t, s.CertPath("apiserver-kubelet-client"))); len(got) != 0 {
		t.Errorf("a client certificate carries names: %v", got)
	}
	// Quay is reached by its registry name, its Service names and, through the NodePort, on 127.0.0.1
	c.Spec.Addons.Quay.Enabled, c.Spec.Addons.Quay.Hostname = true, "registry.lab.example"
	ensure(t, s, tree(t, c), Options{})
	want = []string{"127.0.0.1", "quay.quay.svc", "quay.quay.svc.cluster.local", "registry.lab.example"}
	if got := names(loadCert(t, s.CertPath(QuayCert))); !slices.Equal(got, want) {
		t.Errorf("%s SANs\n got %v\nwant %v", QuayCert, got, want)
	}
}

type fileState struct {
	mode os.FileMode
	mod  time.Time
	size int64
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		out[p] = fileState{fi.Mode(), fi.ModTime(), fi.Size()}
		return nil
	})
	return out
}

func TestSecondRunWritesNothing(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	before := snapshot(t, s.Dir)
	r := ensure(t, s, tr, Options{})
	if r.Changed() != 0 {
		t.Errorf("second run changed %d entries: %+v", r.Changed(), r.Outcomes)
	}
	after := snapshot(t, s.Dir)
	if len(before) != len(after) {
		t.Errorf("file count %d -> %d", len(before), len(after))
	}
	for p, st := range before {
		if after[p] != st {
			t.Errorf("%s changed on the second run", p)
		}
	}
	for p, st := range after {
		switch {
		case p == s.Dir: // made by the test, not the store
		case st.mode.IsDir() && st.mode.Perm() != 0o700:
			t.Errorf("%s: folder mode %o, want 0700", p, st.mode.Perm())
		case strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".conf"):
			if st.mode.Perm() != 0o600 {
				t.Errorf("%s: mode %o, want 0600", p, st.mode.Perm())
			}
		case strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".pub"):
			if st.mode.Perm() != 0o644 {
				t.Errorf("%s: mode %o, want 0644", p, st.mode.Perm())
			}
		}
	}
}

func outcome(r *Result, name string) Outcome {
	for _, o := range r.Outcomes {
		if o.Name == name {
			return o
		}
	}
	return Outcome{}
}

func TestSANChangeReissuesOnlyThatLeaf(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	c := cluster(t)
	ensure(t, s, tree(t, c), Options{})
	c.Spec.PKI.ExtraSANs = []string{"new.example"}
	r := ensure(t, s, tree(t, c), Options{})
	if r.Changed() != 3 {
		t.Fatalf("changed %d entries, want only the 3 API servers': %+v", r.Changed(), r.Outcomes)
	}
	if o := outcome(r, "apiserver/cp3"); o.Action != Reissued || !strings.Contains(o.Reason, "+new.example") {
		t.Errorf("apiserver/cp3 outcome %+v", o)
	}
	// a new control plane adds its own API server, etcd certificates and kubelet kubeconfig; the running API
	// servers' certificates stay as they are
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "cp4", Address: "10.77.0.14", InternalAddress: "10.77.0.14", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}})
	r = ensure(t, s, tree(t, c), Options{})
	var changed []string
	for _, o := range r.Outcomes {
		if o.Action != Reused {
			changed = append(changed, o.Name)
		}
	}
	if want := []string{"apiserver/cp4", "etcd/server-cp4", "etcd/peer-cp4", "kubelet/cp4", "kubeconfig/kubelet-cp4"}; !slices.Equal(changed, want) {
		t.Errorf("adding cp4 changed %v, want %v", changed, want)
	}
}

func TestCheckRenewable(t *testing.T) {
	tr := tree(t, cluster(t))
	for _, ok := range []string{"all", "apiserver", "apiserver/cp1", "etcd", "kubeconfig/admin"} {
		if err := tr.CheckRenewable([]string{ok}); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"apiservr": `no certificate named "apiservr"`, ClusterCA: "cannot be renewed in place", FrontProxyCA: "cannot be renewed in place",
		EtcdCA: "cannot be renewed in place", ServiceAccountKey: "cannot be renewed in place",
	} {
		if err := tr.CheckRenewable([]string{"apiserver", name}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("renewing %s: want %q, got %v", name, want, err)
		}
	}
}

func TestRenew(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	r := ensure(t, s, tr, Options{Renew: []string{"apiserver/cp1", "kubeconfig/admin"}})
	if r.Changed() != 2 || outcome(r, "apiserver/cp1").Reason != "renewal requested" {
		t.Errorf("renew two entries: %+v", r.Outcomes)
	}
	// a folder renews all of its entries
	r = ensure(t, s, tr, Options{Renew: []string{"apiserver"}})
	if r.Changed() != 3 || outcome(r, "apiserver/cp3").Reason != "renewal requested" || outcome(r, "apiserver-etcd-client").Action != Reused {
		t.Errorf("renew the apiserver folder: %+v", r.Outcomes)
	}
	r = ensure(t, s, tr, Options{Renew: []string{"all"}})
	for _, o := range r.Outcomes {
		isCA := o.Name == ClusterCA || o.Name == FrontProxyCA || o.Name == EtcdCA
		if (o.Action == Reissued) == (isCA || o.Name == ServiceAccountKey) {
			t.Errorf("renew all: %s %s (CAs and the service-account key stay, everything else is renewed)", o.Name, o.Action)
		}
	}
}

func TestExpiry(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	c := cluster(t)
	c.Spec.PKI.CertValidity.Duration = 48 * time.Hour
	tr := tree(t, c)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ensure(t, s, tr, Options{Now: func() time.Time { return start }})
	report := CheckExpiration(s, tr, start.Add(24*time.Hour))
	for _, e := range report {
		switch e.Kind {
		case "ca":
			if e.ExpiresIn != "3649d" {
				t.Errorf("%s expires in %s", e.Name, e.ExpiresIn)
			}
		default:
			if e.ExpiresIn != "1d" || e.Problem != "" {
				t.Errorf("%s: %+v", e.Name, e)
			}
		}
	}
	later := start.Add(72 * time.Hour)
	for _, e := range CheckExpiration(s, tr, later) {
		if e.Kind != "ca" && !strings.HasPrefix(e.Problem, "expired") {
			t.Errorf("%s after expiry: %+v", e.Name, e)
		}
	}
	// expired leaves are reissued by the next run, the CAs are kept
	r := ensure(t, s, tr, Options{Now: func() time.Time { return later }})
	if o := outcome(r, "apiserver/cp1"); o.Action != Reissued || !strings.Contains(o.Reason, "expired") {
		t.Errorf("expired apiserver: %+v", o)
	}
	if o := outcome(r, ClusterCA); o.Action != Reused {
		t.Errorf("CA: %+v", o)
	}
	// RenewBefore reissues what expires too soon, keeping its key: a service that loaded the key at its start
	// (etcd's systemd credentials) must still match the renewed certificate
	keyBefore, _ := os.ReadFile(s.KeyPath("apiserver/cp1"))
	certBefore, _ := os.ReadFile(s.CertPath("apiserver/cp1"))
	r = ensure(t, s, tr, Options{Now: func() time.Time { return later }, RenewBefore: 72 * time.Hour})
	if o := outcome(r, "apiserver/cp1"); o.Action != Reissued || !strings.HasPrefix(o.Reason, "expires") {
		t.Errorf("apiserver within RenewBefore: %+v", o)
	}
	keyAfter, _ := os.ReadFile(s.KeyPath("apiserver/cp1"))
	certAfter, _ := os.ReadFile(s.CertPath("apiserver/cp1"))
	if !bytes.Equal(keyBefore, keyAfter) || bytes.Equal(certBefore, certAfter) {
		t.Errorf("a renewal must keep the key and change the certificate (key kept: %v, certificate kept: %v)",
			bytes.Equal(keyBefore, keyAfter), bytes.Equal(certBefore, certAfter))
	}
	os.Remove(s.CertPath("front-proxy-client"))
	for _, e := range CheckExpiration(s, tr, later) {
		if e.Name == "front-proxy-client" && e.Problem != "missing" {
			t.Errorf("missing certificate reported as %+v", e)
		}
	}
}

func TestExternalCA(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	c := cluster(t)
	ensure(t, s, tree(t, c), Options{})
	for _, ca := range []string{ClusterCA, FrontProxyCA, EtcdCA} {
		os.Remove(s.KeyPath(ca))
	}
	if _, err := Ensure(s, tree(t, c), Options{}); err == nil || !strings.Contains(err.Error(), "externalCA") {
		t.Fatalf("a CA without its key must point at externalCA, got %v", err)
	}
	c.Spec.PKI.ExternalCA = true
	r := ensure(t, s, tree(t, c), Options{})
	if r.Changed() != 0 || outcome(r, "apiserver/cp1").Action != Provided || outcome(r, ClusterCA).Action != Provided {
		t.Errorf("complete external tree: %+v", r.Outcomes)
	}
	os.Remove(s.CertPath("apiserver/cp1"))
	os.Remove(s.KubeconfigPath("kubelet-w3"))
	c.Spec.PKI.ExtraSANs = []string{"new.example"} // nothing can be reissued, so stale leaves are listed too
	_, err := Ensure(s, tree(t, c), Options{})
	var me *MissingError
	if !errors.As(err, &me) || len(me.Items) != 4 {
		t.Fatalf("want the missing and the stale entries listed, got %v", err)
	}
	if !strings.Contains(me.Items[0], "apiserver/cp1.crt") || !strings.Contains(me.Items[0], "missing") ||
		!strings.Contains(me.Items[1], "apiserver/cp2.crt") || !strings.Contains(me.Items[3], "kubelet-w3.conf") {
		t.Errorf("missing items %q", me.Items)
	}
	if _, err := os.Stat(s.CertPath("apiserver/cp1")); err == nil {
		t.Error("external-CA mode must never sign")
	}
}

var (
	fixtureOnce sync.Once
	fixtureKeys []crypto.Signer
)

// rsaFixtures hands out a few RSA keys made once: generating dozens per test would take seconds.
func rsaFixtures(t *testing.T) KeyGenerator {
	fixtureOnce.Do(func() {
		for range 3 {
			k, err := GenerateKey(RSA2048)
			if err != nil {
				t.Fatal(err)
			}
			fixtureKeys = append(fixtureKeys, k)
		}
	})
	var mu sync.Mutex
	n := 0
	return func(a Algorithm) (crypto.Signer, error) {
		if a != RSA2048 {
			return GenerateKey(a)
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		return fixtureKeys[n%len(fixtureKeys)], nil
	}
}

func TestRSAAndAlgorithmChange(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	c := cluster(t)
	ensure(t, s, tree(t, c), Options{})
	c.Spec.PKI.KeyAlgorithm = string(RSA2048)
	r := ensure(t, s, tree(t, c), Options{Keys: rsaFixtures(t)})
	if o := outcome(r, ClusterCA); o.Action != Reused {
		t.Errorf("changing the algorithm must not replace a CA: %+v", o)
	}
	if o := outcome(r, "apiserver/cp1"); o.Action != Reissued || !strings.Contains(o.Reason, "configuration says rsa-2048") {
		t.Errorf("apiserver: %+v", o)
	}
	cert := loadCert(t, s.CertPath("apiserver/cp1"))
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok || cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Errorf("RSA leaf: key %T, usage %v", cert.PublicKey, cert.KeyUsage)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(t, s, ClusterCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("RSA leaf signed by the ECDSA CA does not verify: %v", err)
	}
}

func TestCorruptFilesAreReissued(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	os.WriteFile(s.CertPath("front-proxy-client"), []byte("garbage"), 0o644)
	other, _ := GenerateKey(ECDSAP256)
	keyPEM, _ := encodeKey(other)
	os.WriteFile(s.KeyPath("apiserver-etcd-client"), keyPEM, 0o600)
	r := ensure(t, s, tr, Options{})
	if o := outcome(r, "front-proxy-client"); o.Action != Reissued || !strings.Contains(o.Reason, "unreadable") {
		t.Errorf("garbage certificate: %+v", o)
	}
	if o := outcome(r, "apiserver-etcd-client"); o.Action != Reissued || !strings.Contains(o.Reason, "key does not match") {
		t.Errorf("foreign key: %+v", o)
	}
	if r.Changed() != 2 {
		t.Errorf("changed %d", r.Changed())
	}
}

func TestCARotationBundleIsTrusted(t *testing.T) {
	// A CA file may hold the new CA and the old one: leaves signed by either still verify, so a rotation can
	// trust both before the old one is retired.
	s := Store{Dir: t.TempDir()}
	tr := tree(t, cluster(t))
	ensure(t, s, tr, Options{})
	oldCA, _ := os.ReadFile(s.CertPath(ClusterCA))
	fresh := Store{Dir: t.TempDir()}
	ensure(t, fresh, tr, Options{})
	newCA, _ := os.ReadFile(fresh.CertPath(ClusterCA))
	newKey, _ := os.ReadFile(fresh.KeyPath(ClusterCA))
	os.WriteFile(s.CertPath(ClusterCA), append(newCA, oldCA...), 0o644)
	os.WriteFile(s.KeyPath(ClusterCA), newKey, 0o600)
	r := ensure(t, s, tr, Options{})
	if o := outcome(r, "apiserver/cp1"); o.Action == Reissued && strings.Contains(o.Reason, "verify") {
		t.Errorf("a leaf of the old CA must still verify during the rotation: %+v", o)
	}
}

func TestDeployments(t *testing.T) {
	s := Store{Dir: "/state"}
	c := cluster(t)
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "e4", Address: "10.77.0.31", InternalAddress: "10.77.0.31", Roles: []api.Role{api.RoleEtcd}})
	tr := tree(t, c)
	targets := func(h api.Host) []string {
		var out []string
		for _, d := range Deployments(s, tr, h) {
			out = append(out, d.Target)
			if strings.HasSuffix(d.Target, ".key") || strings.HasSuffix(d.Target, ".conf") {
				if d.Mode != 0o600 {
					t.Errorf("%s: %s mode %o", h.Name, d.Target, d.Mode)
				}
			}
		}
		sort.Strings(out)
		return out
	}
	hosts := c.Spec.Hosts
	if got := targets(hosts[4]); !slices.Equal(got, []string{"/etc/kubernetes/flannel.conf", "/etc/kubernetes/kube-proxy.conf", "/etc/kubernetes/kube-router.conf", "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/multus.conf", "/etc/kubernetes/pki/api-lb.crt", "/etc/kubernetes/pki/api-lb.key",
		"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/kubelet.crt", "/etc/kubernetes/pki/kubelet.key"}) {
		t.Errorf("worker gets %v", got)
	}
	off := false
	c.Spec.Addons.Multus.Enabled = &off
	if got := Deployments(s, tree(t, c), hosts[4]); slices.ContainsFunc(got, func(d Deployment) bool { return strings.Contains(d.Target, "multus") }) {
		t.Errorf("with Multus off a worker still gets its kubeconfig: %v", got)
	}
	e4 := targets(hosts[6])
	if slices.Contains(e4, "/etc/kubernetes/kubelet.conf") || !slices.Contains(e4, "/etc/kubernetes/pki/etcd/server.key") || slices.Contains(e4, "/etc/kubernetes/pki/ca.key") {
		t.Errorf("etcd-only host gets %v", e4)
	}
	for _, d := range Deployments(s, tr, hosts[6]) {
		if d.Target == "/etc/kubernetes/pki/etcd/server.crt" && d.Source != "/state/pki/etcd/server-e4.crt" {
			t.Errorf("etcd member receives %s as its server certificate", d.Source)
		}
	}
	cp := Deployments(s, tr, hosts[0])
	if got := Units(cp); !slices.Equal(got, []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet", "privcloud-api-lb", "privcloud-flannel", "privcloud-kube-router"}) {
		t.Errorf("control plane units %v", got)
	}
	for _, d := range cp {
		if d.Target == "/etc/kubernetes/pki/etcd/ca.crt" && !slices.Equal(d.Units, []string{"kube-apiserver", "etcd"}) {
			t.Errorf("a file two roles need is deployed once with both readers: %+v", d)
		}
		if strings.Contains(d.Target, "super-admin") {
			t.Error("super-admin.conf never leaves the operator's machine")
		}
	}
}

// TestNodesReachTheAPIThroughTheirLoadBalancer: kubelets and kube-proxy use the node-local load balancer, the
// operator's kubeconfigs the control-plane endpoint; with the balancer off, nodes use the endpoint too.
func TestNodesReachTheAPIThroughTheirLoadBalancer(t *testing.T) {
	c := cluster(t)
	servers := func(tr *Tree) map[string]string {
		out := map[string]string{}
		for _, k := range tr.Kubeconfigs {
			out[k.Name] = k.Server
		}
		return out
	}
	got := servers(tree(t, c))
	endpoint := "https://" + c.Spec.ControlPlaneEndpoint
	if got["kube-proxy"] != "https://127.0.0.1:6444" || got["kubelet-"+c.Spec.Hosts[4].Name] != "https://127.0.0.1:6444" ||
		got["kube-router"] != "https://127.0.0.1:6444" || got["admin"] != endpoint {
		t.Errorf("with the load balancer: %v", got)
	}
	off := false
	c.Spec.APILoadBalancer.Enabled = &off
	tr := tree(t, c)
	got = servers(tr)
	if got["kube-proxy"] != endpoint || got["kubelet-"+c.Spec.Hosts[4].Name] != endpoint || slices.Contains(tr.Names(), APILoadBalancerCert) {
		t.Errorf("without the load balancer: %v %v", got, tr.Names())
	}
}

func TestWithEndpointsAddsAContextPerControlPlane(t *testing.T) {
	c := cluster(t)
	s := Store{Dir: t.TempDir()}
	if _, err := Ensure(s, tree(t, c), Options{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.KubeconfigPath("admin"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := WithEndpoints(data, []Endpoint{{Name: "cp1", Server: "https://10.0.0.1:6443"}, {Name: "cp2", Server: "https://10.0.0.2:6443"}}, "cp2")
	if err != nil {
		t.Fatal(err)
	}
	var k kubeconfigFile
	if err := yaml.Unmarshal(out, &k); err != nil {
		t.Fatal(err)
	}
	user := k.Users[0].Name
	if len(k.Clusters) != 3 || len(k.Contexts) != 3 || len(k.Users) != 1 || k.CurrentContext != user+"@"+c.Metadata.Name+"-cp2" ||
		k.Clusters[2].Cluster.Server != "https://10.0.0.2:6443" || !bytes.Equal(k.Clusters[2].Cluster.CertificateAuthorityData, k.Clusters[0].Cluster.CertificateAuthorityData) {
		t.Errorf("kubeconfig with endpoints:\n%s", out)
	}
	// the original context stays current when no endpoint is asked for
	out, _ = WithEndpoints(data, []Endpoint{{Name: "cp1", Server: "https://10.0.0.1:6443"}}, "")
	yaml.Unmarshal(out, &k)
	if k.CurrentContext != k.Contexts[0].Name {
		t.Errorf("current context %s, want %s", k.CurrentContext, k.Contexts[0].Name)
	}
}

func TestEncryptionKeysRoundTrip(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	if a, err := EnsureEncryptionConfig(s, false, now); err != nil || a != Created {
		t.Fatalf("ensure: %v %v", a, err)
	}
	keys, err := EncryptionKeys(s)
	if err != nil || len(keys) != 1 || keys[0].Name != "key-20261129120000" || len(keys[0].Secret) != 44 {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	next, err := NewEncryptionKey(now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteEncryptionKeys(s, []EncryptionKey{next, keys[0]}); err != nil {
		t.Fatal(err)
	}
	got, err := EncryptionKeys(s)
	if err != nil || len(got) != 2 || got[0] != next || got[1] != keys[0] {
		t.Errorf("after writing [next, first]: %+v %v", got, err)
	}
	if fi, _ := os.Stat(s.EncryptionConfigPath()); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if a, _ := EnsureEncryptionConfig(s, false, now); a != Reused {
		t.Errorf("an existing configuration is not kept: %v", a)
	}
}

// TestMonitoringCertificates: with monitoring on, every host (an etcd-only one too) gets its metrics endpoint's
// certificate naming its address and the CA its clients chain to; Prometheus's own certificate never leaves
// the state directory (the add-on puts it in a Secret).
func TestMonitoringCertificates(t *testing.T) {
	s := Store{Dir: "/state"}
	c := cluster(t)
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "e4", Address: "10.77.0.31", InternalAddress: "10.77.0.31", Roles: []api.Role{api.RoleEtcd}})
	c.Spec.Addons.Monitoring.Enabled = true
	tr := tree(t, c)
	for _, h := range c.Spec.Hosts {
		var metrics []string
		for _, d := range Deployments(s, tr, h) {
			if strings.Contains(d.Source, PrometheusClientCert) {
				t.Errorf("%s receives Prometheus's certificate %s", h.Name, d.Source)
			}
			if slices.Contains(d.Units, MetricsUnit) {
				metrics = append(metrics, d.Target+"<-"+strings.TrimPrefix(d.Source, "/state/pki/"))
			}
		}
		sort.Strings(metrics)
		want := []string{"/etc/kubernetes/pki/ca.crt<-ca.crt", "/etc/kubernetes/pki/metrics.crt<-metrics/" + h.Name + ".crt", "/etc/kubernetes/pki/metrics.key<-metrics/" + h.Name + ".key"}
		if !slices.Equal(metrics, want) {
			t.Errorf("%s: the metrics endpoint reads %v, want %v", h.Name, metrics, want)
		}
	}
	for _, l := range tr.Leaves {
		if l.Name == MetricsCert("e4") && (l.CommonName != MetricsUser || len(l.IPs) != 1 || l.IPs[0].String() != "10.77.0.31") {
			t.Errorf("e4's metrics certificate: %+v", l)
		}
	}
	c.Spec.Addons.Monitoring.Enabled = false
	for _, d := range Deployments(s, tree(t, c), c.Spec.Hosts[6]) {
		if slices.Contains(d.Units, MetricsUnit) {
			t.Errorf("monitoring off, e4 still gets %s", d.Target)
		}
	}
}
