package pki

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/privcloud/privcloud/internal/atomicfile"
)

// EncryptionConfig names the API servers' EncryptionConfiguration: the key Secrets are encrypted with in etcd.
// Like the CAs it is part of the cluster's identity: a new one could not read the Secrets the old one wrote.
const EncryptionConfig = "encryption-config"

// EncryptionConfigPath is where the state directory keeps it (with the keys, so backups carry it).
func (s Store) EncryptionConfigPath() string {
	return filepath.Join(s.Dir, "pki", EncryptionConfig+".yaml")
}

// EnsureEncryptionConfig keeps the state directory's EncryptionConfiguration, or writes one (0600) with a new
// random secretbox key. Secrets written before encryption stay readable through the identity provider listed
// last, and are encrypted when next written.
func EnsureEncryptionConfig(s Store, dryRun bool, now time.Time) (Action, error) {
	path := s.EncryptionConfigPath()
	if _, err := os.Stat(path); err == nil {
		return Reused, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if dryRun {
		return Created, nil
	}
	key, err := NewEncryptionKey(now)
	if err != nil {
		return "", err
	}
	return Created, WriteEncryptionKeys(s, []EncryptionKey{key})
}

// EncryptionKey is one secretbox key of the EncryptionConfiguration.
type EncryptionKey struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// NewEncryptionKey is a random 32-byte secretbox key named after the time it was made.
func NewEncryptionKey(now time.Time) (EncryptionKey, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return EncryptionKey{}, err
	}
	return EncryptionKey{Name: "key-" + now.UTC().Format("20060102150405"), Secret: base64.StdEncoding.EncodeToString(key)}, nil
}

// encryptionConfig is the part of an EncryptionConfiguration privcloud writes and reads.
type encryptionConfig struct {
	Resources []struct {
		Providers []struct {
			Secretbox *struct {
				Keys []EncryptionKey `json:"keys"`
			} `json:"secretbox,omitempty"`
		} `json:"providers"`
	} `json:"resources"`
}

// EncryptionKeys reads the secretbox keys of the state directory's EncryptionConfiguration in their order: the
// API servers encrypt with the first and decrypt with any.
func EncryptionKeys(s Store) ([]EncryptionKey, error) {
	data, err := os.ReadFile(s.EncryptionConfigPath())
	if err != nil {
		return nil, err
	}
	var c encryptionConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", s.EncryptionConfigPath(), err)
	}
	for _, r := range c.Resources {
		for _, p := range r.Providers {
			if p.Secretbox != nil && len(p.Secretbox.Keys) > 0 {
				return p.Secretbox.Keys, nil
			}
		}
	}
	return nil, fmt.Errorf("%s holds no secretbox key", s.EncryptionConfigPath())
}

// WriteEncryptionKeys writes the EncryptionConfiguration (0600) with keys in order: the first encrypts, every one
// decrypts, and Secrets written before encryption stay readable through the identity provider listed last.
func WriteEncryptionKeys(s Store, keys []EncryptionKey) error {
	var b strings.Builder
	b.WriteString(`# Written by privcloud: Secrets are encrypted in etcd with the first key and read with any. Keep it with the
# state directory (privcloud backup does): without it the cluster's Secrets cannot be read.
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
`)
	for _, k := range keys {
		fmt.Fprintf(&b, "      - name: %s\n        secret: %s\n", k.Name, k.Secret)
	}
	b.WriteString("  - identity: {}\n")
	path := s.EncryptionConfigPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}
