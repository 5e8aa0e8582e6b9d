// Package secret recognises key material, tokens and passwords in text, so that no output mode, log level
// or error ever carries them: a file's change is shown, never its secret content.
package secret

import (
	"regexp"
	"strings"
)

const redacted = "[redacted]"

var (
	// pemKey is a PEM block of any private key (PKCS#1, PKCS#8, EC, OpenSSH, encrypted).
	pemKey = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
	// fields are YAML, JSON and env-style fields whose value is a secret: kubeconfig keys and tokens,
	// EncryptionConfiguration secrets, bootstrap tokens, passwords.
	fields = regexp.MustCompile(`(?i)("?(client-key-data|token|password|secret|passphrase|private[-_]?key)"?\s*[:=]\s*)("[^"\n]*"|[^\s,}]+)`)
)

// Redact replaces private keys and secret field values in s.
func Redact(s string) string {
	if !mayHold(s) {
		return s
	}
	s = pemKey.ReplaceAllString(s, "[redacted private key]")
	return fields.ReplaceAllString(s, "${1}"+redacted)
}

// mayHold is a cheap first look, so the common message costs no regular expression.
func mayHold(s string) bool {
	l := strings.ToLower(s)
	for _, w := range []string{"private key", "client-key-data", "token", "password", "secret", "passphrase", "private"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// File reports whether a file's content must never be shown: a key by its name, or content that holds key
// material or secret fields (kubeconfigs' keys, the encryption configuration). Files that are merely root's
// alone (unit files, the kubelet's configuration) are shown.
func File(path string, data []byte) bool {
	if strings.HasSuffix(path, ".key") || strings.HasSuffix(path, ".pem") {
		return true
	}
	s := string(data)
	return Redact(s) != s
}
