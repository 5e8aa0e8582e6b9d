//go:build integration

package pki

import (
	"crypto/x509"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOpenSSLAgrees checks the tree with an independent implementation: OpenSSL must accept every leaf
// for its purpose against its own CA, and the API server certificate for its names.
func TestOpenSSLAgrees(t *testing.T) {
	for _, algo := range []Algorithm{ECDSAP256, RSA2048} {
		t.Run(string(algo), func(t *testing.T) {
			s := Store{Dir: t.TempDir()}
			c := cluster(t)
			c.Spec.PKI.KeyAlgorithm = string(algo)
			tr := tree(t, c)
			ensure(t, s, tr, Options{Keys: rsaFixtures(t)})
			for _, leaf := range tr.Leaves {
				purposes := []string{}
				if slices.Contains(leaf.Usages, x509.ExtKeyUsageServerAuth) {
					purposes = append(purposes, "sslserver")
				}
				if slices.Contains(leaf.Usages, x509.ExtKeyUsageClientAuth) {
					purposes = append(purposes, "sslclient")
				}
				for _, p := range purposes {
					openssl(t, true, "verify", "-CAfile", s.CertPath(leaf.CA), "-purpose", p, s.CertPath(leaf.Name))
				}
				if len(purposes) == 1 && purposes[0] == "sslclient" {
					openssl(t, false, "verify", "-CAfile", s.CertPath(leaf.CA), "-purpose", "sslserver", s.CertPath(leaf.Name))
				}
			}
			apiserver := s.CertPath("apiserver/cp1")
			openssl(t, true, "verify", "-CAfile", s.CertPath(ClusterCA), "-verify_hostname", "kubernetes.default.svc.cluster.local", apiserver)
			openssl(t, true, "verify", "-CAfile", s.CertPath(ClusterCA), "-verify_ip", "10.96.0.1", apiserver)
			openssl(t, false, "verify", "-CAfile", s.CertPath(ClusterCA), "-verify_hostname", "evil.example", apiserver)
			openssl(t, false, "verify", "-CAfile", s.CertPath(EtcdCA), apiserver)
			// every key matches its certificate, as OpenSSL reads them
			for _, leaf := range tr.Leaves {
				pubFromCert := openssl(t, true, "x509", "-in", s.CertPath(leaf.Name), "-noout", "-pubkey")
				pubFromKey := openssl(t, true, "pkey", "-in", s.KeyPath(leaf.Name), "-pubout")
				if pubFromCert != pubFromKey {
					t.Errorf("%s: key does not match certificate for OpenSSL", leaf.Name)
				}
			}
		})
	}
}

func openssl(t *testing.T, wantOK bool, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if (err == nil) != wantOK {
		t.Errorf("openssl %s: ok=%v, want %v\n%s", strings.Join(args, " "), err == nil, wantOK, out)
	}
	return string(out)
}
