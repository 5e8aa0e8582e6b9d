package pki

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

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
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	doc := fmt.Sprintf(`# Written by privcloud: Secrets are encrypted in etcd with this key. Keep it with the state directory
# (privcloud backup does): without it the cluster's Secrets cannot be read.
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - name: key-%s
        secret: %s
  - identity: {}
`, now.UTC().Format("20060102150405"), base64.StdEncoding.EncodeToString(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return Created, atomicfile.Write(path, []byte(doc), 0o600)
}
