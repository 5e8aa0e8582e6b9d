// Package bundle makes and checks privcloud's air-gap bundle: one tar+zstd archive holding a manifest, the
// binaries, the container images (docker-archive tarballs) and an SPDX SBOM. Nothing is downloaded at
// install time; every file is checked against the manifest's sha256, and the manifest can be signed.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/klauspost/compress/zstd"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// ManifestName is the archive's first entry.
const ManifestName = "manifest.json"

// SBOMName is the SPDX document in the archive.
const SBOMName = "sbom.spdx.json"

// Manifest lists what a bundle holds.
type Manifest struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Name       string      `json:"name"`
	Platform   string      `json:"platform"`
	Components []Component `json:"components"`
	// Files is every file of the archive but the manifest, with its digest.
	Files []File `json:"files"`
}

// Component is one binary or image of the bundle, or one recorded as absent.
type Component struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Kind     string   `json:"kind"` // binary, image, absent
	Roles    []string `json:"roles,omitempty"`
	Path     string   `json:"path,omitempty"`
	SHA256   string   `json:"sha256,omitempty"`
	Size     int64    `json:"size,omitempty"`
	ImageRef string   `json:"imageRef,omitempty"`
	// ImageOnly binaries are packed into images and never installed on hosts.
	ImageOnly bool   `json:"imageOnly,omitempty"`
	Origin    string `json:"origin"`
	Absent    string `json:"absent,omitempty"`
}

// NeededBy reports whether a host's roles call for the component (no roles: every host). Binaries packed into
// images only are never installed.
func (c Component) NeededBy(h api.Host) bool {
	if c.ImageOnly {
		return false
	}
	if len(c.Roles) == 0 {
		return true
	}
	return slices.ContainsFunc(c.Roles, func(r string) bool { return h.HasRole(api.Role(r)) })
}

// File is one archive entry.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Find returns the component name at version ("" for any), or nil.
func (m *Manifest) Find(name, version string) *Component {
	for i := range m.Components {
		c := &m.Components[i]
		if c.Name == name && (version == "" || c.Version == version) {
			return c
		}
	}
	return nil
}

// writeArchive packs the files of dir listed in m, manifest first, into a tar+zstd file at out. Entries are
// sorted and carry no times or owners, so the same inputs give the same archive.
func writeArchive(out, dir string, m *Manifest) error {
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".bundle-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := writeEntry(tw, ManifestName, int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return err
	}
	files := append([]File(nil), m.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		src, err := os.Open(filepath.Join(dir, f.Path))
		if err != nil {
			return err
		}
		err = writeEntry(tw, f.Path, f.Size, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func writeEntry(tw *tar.Writer, name string, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed while being packed", name)
	}
	return err
}

// Reader walks a bundle archive entry by entry without unpacking it.
type Reader struct {
	f  *os.File
	zr *zstd.Decoder
	tr *tar.Reader
	// Manifest is the archive's first entry.
	Manifest *Manifest
	// ManifestBytes is the manifest as stored: what a signature covers.
	ManifestBytes []byte
}

// Open opens a bundle and reads its manifest.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	zr, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a zstd archive: %w", path, err)
	}
	r := &Reader{f: f, zr: zr, tr: tar.NewReader(zr)}
	hdr, err := r.tr.Next()
	if err != nil || hdr.Name != ManifestName {
		r.Close()
		return nil, fmt.Errorf("%s: not a privcloud bundle: its first entry must be %s", path, ManifestName)
	}
	if r.ManifestBytes, err = io.ReadAll(io.LimitReader(r.tr, 16<<20)); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.Manifest = &Manifest{}
	if err := json.Unmarshal(r.ManifestBytes, r.Manifest); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: manifest: %w", path, err)
	}
	return r, nil
}

// Next returns the next file entry and a reader of its content, or io.EOF.
func (r *Reader) Next() (string, io.Reader, error) {
	hdr, err := r.tr.Next()
	if err != nil {
		return "", nil, err
	}
	if hdr.Typeflag != tar.TypeReg {
		return hdr.Name, nil, fmt.Errorf("%s: entry %q is not a regular file", r.f.Name(), hdr.Name)
	}
	return hdr.Name, r.tr, nil
}

// Close releases the archive.
func (r *Reader) Close() error {
	r.zr.Close()
	return r.f.Close()
}

// Extract writes the entries wanted reports true for under dir (same relative paths), checking each against
// the manifest's sha256 as it streams. It returns the paths written.
func Extract(path, dir string, wanted func(string) bool) ([]string, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	sums := map[string]string{}
	for _, f := range r.Manifest.Files {
		sums[f.Path] = f.SHA256
	}
	var out []string
	for {
		name, content, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if !wanted(name) {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := extractOne(dst, content, sums[name]); err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, dst)
	}
}

// extractOne streams content to dst through a temporary file, renamed into place only when its sha256 is
// the one expected.
func extractOne(dst string, content io.Reader, want string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".extract-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sha256 %s, the manifest says %s", got, want)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
