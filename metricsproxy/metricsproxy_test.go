package metricsproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, cn string, notAfter time.Time) (tls.Certificate, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM
}

// TestEndpointServesAllowedClientsOnly runs the endpoint over real TLS in front of a component on the
// loopback: the allowed client gets the component's metrics in the format it asked for, any other verified
// client 403, a client of another CA or without a certificate no connection.
func TestEndpointServesAllowedClientsOnly(t *testing.T) {
	component := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; accept="+r.Header.Get("Accept"))
		io.WriteString(w, "component_up 1\n")
	}))
	defer component.Close()
	ca := newCA(t)
	serving, _ := ca.issue(t, "system:privcloud:metrics", time.Now().Add(time.Hour))
	dir := t.TempDir()
	_, expiring := ca.issue(t, "kube-apiserver", time.Unix(2000000000, 0))
	os.MkdirAll(filepath.Join(dir, "etcd"), 0o755)
	os.WriteFile(filepath.Join(dir, "etcd", "server.crt"), expiring, 0o644)
	os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("junk"), 0o644)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	creds := &Credentials{Cert: serving, ClientCA: pool}
	cfg := &Config{Listen: "127.0.0.1:0", Clients: []string{"prometheus"}, Routes: map[string]string{"etcd": component.URL + "/metrics"},
		CertificateDirs: []string{dir}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, l, creds, Handler(cfg, creds)) }()
	defer func() { cancel(); <-done }()

	get := func(client tls.Certificate, path string, accept string) (int, string, error) {
		tc := &tls.Config{RootCAs: pool}
		if client.Certificate != nil {
			tc.Certificates = []tls.Certificate{client}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "https://"+l.Addr().String()+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type") + "\n" + string(b), nil
	}
	prom, _ := ca.issue(t, "prometheus", time.Now().Add(time.Hour))
	code, body, err := get(prom, "/metrics/etcd", "application/openmetrics-text")
	if err != nil || code != 200 || !strings.Contains(body, "component_up 1") || !strings.Contains(body, "accept=application/openmetrics-text") {
		t.Errorf("allowed client: %d %q %v", code, body, err)
	}
	code, body, err = get(prom, "/metrics/certificates", "")
	if err != nil || code != 200 ||
		!strings.Contains(body, `privcloud_certificate_expiry_timestamp_seconds{file="`+filepath.Join(dir, "etcd", "server.crt")+`",subject="kube-apiserver",`) ||
		!strings.Contains(body, "} 2000000000\n") || !strings.Contains(body, "privcloud_certificate_files_unreadable 1\n") {
		t.Errorf("certificates: %d %q %v", code, body, err)
	}
	if code, _, err := get(prom, "/metrics/nothing", ""); err != nil || code != 404 {
		t.Errorf("unknown route: %d %v", code, err)
	}
	other, _ := ca.issue(t, "someone", time.Now().Add(time.Hour))
	if code, body, err := get(other, "/metrics/etcd", ""); err != nil || code != 403 {
		t.Errorf("other client: %d %q %v, want 403", code, body, err)
	}
	stranger, _ := newCA(t).issue(t, "prometheus", time.Now().Add(time.Hour))
	if _, _, err := get(stranger, "/metrics/etcd", ""); err == nil {
		t.Error("a client of another CA got an answer")
	}
	if _, _, err := get(tls.Certificate{}, "/metrics/etcd", ""); err == nil {
		t.Error("a client without a certificate got an answer")
	}
}

func TestLoadConfigRefusesRoutesOffTheLoopback(t *testing.T) {
	for _, tc := range []struct{ routes, want string }{
		{`{etcd: "http://127.0.0.1:2381/metrics", kcm: "https://[::1]:10257/metrics"}`, ""},
		{`{etcd: "http://10.0.0.1:2381/metrics"}`, "not on the loopback"},
		{`{etcd: "http://localhost:2381/metrics"}`, "not on the loopback"},
		{`{etcd: "file:///etc/passwd"}`, "not an http or https URL"},
		{`{certificates: "http://127.0.0.1:1/"}`, "not a route name"},
	} {
		p := filepath.Join(t.TempDir(), "m.yaml")
		os.WriteFile(p, []byte("listen: 10.0.0.1:10290\nclients: [p]\nroutes: "+tc.routes+"\n"), 0o644)
		_, err := LoadConfig(p)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.routes, err, tc.want)
		}
	}
}
