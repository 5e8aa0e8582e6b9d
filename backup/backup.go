// Package backup writes and reads privcloud's backup files: one tar archive, zstd-compressed, holding an etcd
// snapshot, the cluster's PKI, kubeconfigs and generated credentials from the state directory, and
// cluster.yaml, behind a manifest that records each file's sha256. A restore needs nothing else.
package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/internal/filehash"
)

// Paths inside a backup.
const (
	ManifestPath = "backup.json"
	SnapshotPath = "etcd/snapshot.db"
	ConfigPath   = "cluster.yaml"
	// StatePrefix holds the state directory's folders (pki/, kubeconfig/, addons/).
	StatePrefix = "state/"
)

// StateFolders are the state directory's folders a backup keeps: everything but caches.
var StateFolders = []string{"pki", "kubeconfig", "addons"}

// Manifest describes a backup.
type Manifest struct {
	Cluster           string    `json:"cluster"`
	Created           time.Time `json:"created"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	// EtcdMember is the member the snapshot was taken through.
	EtcdMember string `json:"etcdMember"`
	Files      []File `json:"files"`
}

// File is one archive entry.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Write packs files (archive path → local path) behind the manifest into out, atomically and 0600: a
// backup holds the CA keys.
func Write(out string, m Manifest, files map[string]string) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	m.Files = nil
	for _, name := range names {
		sum, size, err := filehash.SHA256(files[name])
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Path: name, SHA256: sum, Size: size})
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error { return writeArchive(w, manifest, m.Files, files) })
}

func writeArchive(w io.Writer, manifest []byte, entries []File, files map[string]string) error {
	zw, err := zstd.NewWriter(w)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: ManifestPath, Mode: 0o600, Size: int64(len(manifest)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(manifest); err != nil {
		return err
	}
	for _, e := range entries {
		f, err := os.Open(files[e.Path])
		if err != nil {
			return err
		}
		err = tw.WriteHeader(&tar.Header{Name: e.Path, Mode: 0o600, Size: e.Size, ModTime: time.Now()})
		if err == nil {
			_, err = io.Copy(tw, io.LimitReader(f, e.Size))
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// Extract checks a backup and unpacks it into dir (created 0700): every file's sha256 and size must match
// the manifest and every file of the manifest must be there, or nothing is returned but the error.
func Extract(file, dir string) (*Manifest, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a privcloud backup: %w", file, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ManifestPath {
		return nil, fmt.Errorf("%s: not a privcloud backup (no %s first)", file, ManifestPath)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", file, ManifestPath, err)
	}
	want := map[string]File{}
	for _, e := range m.Files {
		if !fs.ValidPath(e.Path) || strings.HasPrefix(e.Path, "../") {
			return nil, fmt.Errorf("%s: manifest path %q leaves the backup", file, e.Path)
		}
		want[e.Path] = e
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		e, ok := want[hdr.Name]
		if !ok {
			return nil, fmt.Errorf("%s: %s is not in the manifest", file, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(path.Clean(e.Path)))
		if err := extractOne(tr, dst, e); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, e.Path, err)
		}
		seen[e.Path] = true
	}
	for _, e := range m.Files {
		if !seen[e.Path] {
			return nil, fmt.Errorf("%s: %s is in the manifest but not in the archive", file, e.Path)
		}
	}
	return &m, nil
}

func extractOne(r io.Reader, dst string, e File) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != e.Size || got != e.SHA256 {
		return fmt.Errorf("sha256 %s (%d bytes), manifest says %s (%d bytes): the backup is damaged", got, n, e.SHA256, e.Size)
	}
	return nil
}

// StateFiles lists the state directory's files a backup keeps, keyed by their archive path.
func StateFiles(stateDir string) (map[string]string, error) {
	out := map[string]string{}
	for _, folder := range StateFolders {
		root := filepath.Join(stateDir, folder)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return filepath.SkipDir
			}
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(stateDir, p)
			if err != nil {
				return err
			}
			out[StatePrefix+filepath.ToSlash(rel)] = p
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
