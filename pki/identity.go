package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
)

// A cluster's identity is its CAs and its service-account key: every certificate, kubeconfig and token chains
// to them. Sending a host another identity than the one it trusts replaces the running cluster's, so the files
// that carry it are compared before anything is sent.

// IsIdentity reports whether a deployment carries the cluster's identity (a CA certificate or the
// service-account public key) rather than a leaf.
func (d Deployment) IsIdentity() bool {
	switch d.Entry {
	case ClusterCA, FrontProxyCA, EtcdCA:
		return strings.HasSuffix(d.Target, ".crt")
	case ServiceAccountKey:
		return strings.HasSuffix(d.Target, ".pub")
	case EncryptionConfig:
		return true
	}
	return false
}

// SameIdentity reports whether two PEM files (CA bundles or public keys) share a public key: a CA file may hold
// an old and a new CA while one is being replaced, and either in common keeps trust.
func SameIdentity(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true // an EncryptionConfiguration, say, which holds no public key
	}
	have := publicKeys(a)
	for _, k := range publicKeys(b) {
		for _, h := range have {
			if bytes.Equal(k, h) {
				return true
			}
		}
	}
	return false
}

// Fingerprints lists the sha256 of each public key of a PEM file, shortened, for messages; of a file without
// one (an EncryptionConfiguration), the sha256 of the file, so no key is ever shown.
func Fingerprints(data []byte) []string {
	if len(data) > 0 && len(publicKeys(data)) == 0 {
		sum := sha256.Sum256(data)
		return []string{"file sha256:" + hex.EncodeToString(sum[:8])}
	}
	var out []string
	for _, k := range publicKeys(data) {
		sum := sha256.Sum256(k)
		out = append(out, "sha256:"+hex.EncodeToString(sum[:8]))
	}
	return out
}

// publicKeys returns the DER public keys of the certificates and public keys in a PEM file.
func publicKeys(data []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		switch block.Type {
		case "CERTIFICATE":
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				out = append(out, c.RawSubjectPublicKeyInfo)
			}
		case "PUBLIC KEY":
			out = append(out, block.Bytes)
		}
	}
}
