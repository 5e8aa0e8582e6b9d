package secret

import (
	"strings"
	"testing"
)

func TestRedactRemovesKeysTokensAndPasswords(t *testing.T) {
	in := `users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZLVNFQ1JFVA==
    token: abcdef.0123456789abcdef
password=hunter2 {"password":"p4ss","secret": "s3cr3t"}
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGl0LXMtYS1rZXk=
-----END EC PRIVATE KEY-----
-----BEGIN CERTIFICATE-----
MIIBcert
-----END CERTIFICATE-----`
	out := Redact(in)
	for _, leaked := range []string{"S0VZLVNFQ1JFVA", "0123456789abcdef", "hunter2", "p4ss", "s3cr3t", "MHcCAQEEIGl0LXMtYS1rZXk"} {
		if strings.Contains(out, leaked) {
			t.Errorf("%q survived redaction:\n%s", leaked, out)
		}
	}
	for _, kept := range []string{"Q0VSVA==", "MIIBcert", "name: admin"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q was redacted but is not secret:\n%s", kept, out)
		}
	}
	if plain := "changed /etc/kubernetes/pki/apiserver.crt"; Redact(plain) != plain {
		t.Errorf("an ordinary message changed: %q", Redact(plain))
	}
}

func TestFileIsSecretByModeOrContent(t *testing.T) {
	if !File("/etc/kubernetes/pki/sa.key", []byte("anything")) {
		t.Error("a .key file must count as secret")
	}
	if !File("/etc/x", []byte("-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n")) {
		t.Error("a private key must count as secret whatever its name")
	}
	if !File("/etc/kubernetes/encryption-config.yaml", []byte("  - secretbox:\n      keys:\n      - name: k\n        secret: c2VjcmV0\n")) {
		t.Error("an encryption configuration must count as secret")
	}
	if File("/etc/systemd/system/etcd.service", []byte("[Unit]\nDescription=etcd\n")) {
		t.Error("a unit file is not secret, even 0600")
	}
}
