package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/privcloud/privcloud/internal/atomicfile"
)

// Store is the local PKI folder (the cluster's state directory): certificates and keys under pki/, kubeconfigs
// under kubeconfig/. Folders are 0700, keys and kubeconfigs 0600, certificates 0644; every file is written
// atomically so a crash never leaves half a key.
type Store struct {
	Dir string
}

// CertPath is where a certificate of the tree is kept.
func (s Store) CertPath(name string) string { return filepath.Join(s.Dir, "pki", name+".crt") }

// KeyPath is where a private key of the tree is kept.
func (s Store) KeyPath(name string) string { return filepath.Join(s.Dir, "pki", name+".key") }

// SignerCertPath is where the certificate of a CA's key is kept alone: the CA file may hold another one beside it.
func (s Store) SignerCertPath(name string) string {
	return filepath.Join(s.Dir, "pki", name+"-signer.crt")
}

// PublicKeyPath is where the service-account verification key is kept.
func (s Store) PublicKeyPath(name string) string { return filepath.Join(s.Dir, "pki", name+".pub") }

// KubeconfigPath is where a kubeconfig of the tree is kept.
func (s Store) KubeconfigPath(name string) string {
	return filepath.Join(s.Dir, "kubeconfig", name+".conf")
}

// read returns a file's content, or nil with no error when it does not exist.
func read(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// write replaces path atomically.
func write(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

// syncDirs makes the renames in dirs durable.
func syncDirs(dirs map[string]bool) error {
	for d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
