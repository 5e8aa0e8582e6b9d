package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	xssh "golang.org/x/crypto/ssh"
)

func newKey(t *testing.T) xssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := xssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authorized(k xssh.PublicKey) string {
	return strings.TrimSpace(string(xssh.MarshalAuthorizedKey(k)))
}

func check(t *testing.T, hk *HostKeys, addr string, key xssh.PublicKey) HostKeyProblem {
	t.Helper()
	cb, err := hk.Callback(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	err = cb(addr, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 22}, key)
	var he *HostKeyError
	if err == nil {
		return ""
	}
	if !errors.As(err, &he) {
		t.Fatalf("untyped host-key error: %v", err)
	}
	return he.Problem
}

func TestHostKeysVerify(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	host, ca, stranger := newKey(t), newKey(t), newKey(t)
	os.WriteFile(file, []byte("node1.example.com "+authorized(host)+"\n@cert-authority *.example.com "+authorized(ca)+"\n"), 0o600)
	hk, err := NewHostKeys([]string{filepath.Join(dir, "missing"), file}, false)
	if err != nil {
		t.Fatalf("a missing known_hosts file must count as empty: %v", err)
	}
	cases := []struct {
		name string
		addr string
		key  xssh.PublicKey
		want HostKeyProblem
	}{
		{"known key", "node1.example.com:22", host, ""},
		{"changed key", "node1.example.com:22", stranger, HostKeyChanged},
		{"unknown host", "node2.other.org:22", stranger, HostKeyUnknown},
		{"CA key posing as a host key", "node2.example.com:22", ca, HostKeyChanged},
		{"plain key where only a CA is known is unknown, not changed", "node3.example.com:22", stranger, HostKeyUnknown},
	}
	for _, tc := range cases {
		if got := check(t, hk, tc.addr, tc.key); got != tc.want {
			t.Errorf("%s: problem %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := hk.Algorithms("node3.example.com:22", ""); len(got) == 0 || got[0] != xssh.CertAlgoED25519v01 {
		t.Errorf("a CA-covered host must be asked for certificates first, got %v", got)
	}
	if got := hk.Algorithms("node1.example.com:22", ""); got[0] != xssh.KeyAlgoED25519 {
		t.Errorf("a host with a known ed25519 key must be asked for it first, got %v", got)
	}
	if got := hk.Algorithms("unknown.org:22", ""); got != nil {
		t.Errorf("an unknown host keeps the defaults, got %v", got)
	}
}

func TestHostKeyAlgorithmsFollowPin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	host := newKey(t)
	os.WriteFile(file, []byte("node1.example.com "+authorized(host)+"\n"), 0o600)
	hk, err := NewHostKeys([]string{file}, false)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := xssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pinned := authorized(rsaPub)
	for _, addr := range []string{"unknown.org:22", "node1.example.com:22"} {
		got := hk.Algorithms(addr, pinned)
		if len(got) < 3 || got[0] != xssh.KeyAlgoRSASHA512 || got[1] != xssh.KeyAlgoRSASHA256 {
			t.Errorf("%s: an RSA pin must be asked for first, got %v", addr, got)
		}
		if !slices.Contains(got, xssh.KeyAlgoED25519) || !slices.Contains(got, xssh.KeyAlgoECDSA256) {
			t.Errorf("%s: other key types must follow, so a host without the pinned one shows its key, got %v", addr, got)
		}
	}
	if got := hk.Algorithms("unknown.org:22", authorized(newKey(t))); got[0] != xssh.KeyAlgoED25519 {
		t.Errorf("an ed25519 pin must be asked for first, got %v", got)
	}
}

func TestHostKeysRejectMalformedFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(file, []byte("host ssh-ed25519 not-base64!!\n"), 0o600)
	if _, err := NewHostKeys([]string{file}, false); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a malformed known_hosts must be an error naming the file: %v", err)
	}
}
