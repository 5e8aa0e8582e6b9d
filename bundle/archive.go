// Package bundle reads and checks privcloud's air-gap bundle: one tar+zstd archive holding a manifest, the
// binaries, the container images (docker-archive tarballs) and an SPDX SBOM. Nothing is downloaded at
// install time; every file is checked against the manifest's sha256, and the manifest can be signed.
// Bundles are made by package bundle/build, kept apart so that installing does not compile the builder.
package bundle

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

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
	// ImageID is an image's config digest (what containerd and docker call its ID): bundle verify checks the
	// archive against it.
	ImageID string `json:"imageId,omitempty"`
	// ImageSource is where a pulled image came from, pinned: its repository @ the digest its reference
	// resolved to (an index, for a multi-platform image).
	ImageSource string `json:"imageSource,omitempty"`
	// ImageDigest is the digest of the pulled platform image's manifest.
	ImageDigest string `json:"imageDigest,omitempty"`
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

// CheckEntryName refuses a path of the archive or manifest that could point outside the folder the bundle is
// unpacked to, or name one file in two ways: it must be relative, slash-separated and clean, without "..".
func CheckEntryName(name string) error {
	switch {
	case name == "" || name == ".":
		return fmt.Errorf("%q is not a file name", name)
	case strings.Contains(name, `\`):
		return fmt.Errorf("%q contains a backslash", name)
	case path.IsAbs(name):
		return fmt.Errorf("%q is an absolute path: bundle paths are relative", name)
	case slices.Contains(strings.Split(name, "/"), ".."):
		return fmt.Errorf("%q contains \"..\": it would lead out of the bundle's folder", name)
	case path.Clean(name) != name:
		return fmt.Errorf("%q is not a clean path (%q)", name, path.Clean(name))
	}
	return nil
}

// safeName is what a bundle's name and its components' names and versions may be: they become folder, file
// and link names here (the unpacked bundle) and on hosts (/opt/privcloud/NAME/VERSION/NAME, /usr/local/bin/NAME).
var safeName = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9._+-]*$`)

const safeNameRule = "only letters, digits, '.', '_', '+' and '-', not starting with '.' or '-'"

// problems lists what in m could make a path leave its folder, here or on a host; nothing of m can be trusted
// before it is empty.
func (m *Manifest) problems() []string {
	var out []string
	if !safeName.MatchString(m.Name) {
		out = append(out, fmt.Sprintf("manifest name %q: %s", m.Name, safeNameRule))
	}
	for _, f := range m.Files {
		if err := CheckEntryName(f.Path); err != nil {
			out = append(out, fmt.Sprintf("manifest file %v", err))
		}
	}
	for _, c := range m.Components {
		if !safeName.MatchString(c.Name) {
			out = append(out, fmt.Sprintf("component name %q: %s", c.Name, safeNameRule))
		}
		if !safeName.MatchString(c.Version) {
			out = append(out, fmt.Sprintf("component %q version %q: %s", c.Name, c.Version, safeNameRule))
		}
		if c.Kind == "absent" {
			continue
		}
		if err := CheckEntryName(c.Path); err != nil {
			out = append(out, fmt.Sprintf("component %q path %v", c.Name, err))
		}
	}
	return out
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
	if err != nil || hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
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
	// refused here, so that no caller ever builds a path from a hostile manifest
	if problems := r.Manifest.problems(); len(problems) > 0 {
		r.Close()
		return nil, &VerifyError{Bundle: path, Problems: problems}
	}
	return r, nil
}

// entryError refuses one archive entry; the entries after it can still be read.
type entryError struct{ bundle, problem string }

func (e *entryError) Error() string { return e.bundle + ": " + e.problem }

// Next returns the next file entry and a reader of its content, or io.EOF.
func (r *Reader) Next() (string, io.Reader, error) {
	hdr, err := r.tr.Next()
	if err != nil {
		return "", nil, err
	}
	if hdr.Typeflag != tar.TypeReg {
		return hdr.Name, nil, &entryError{r.f.Name(), fmt.Sprintf("entry %q is not a regular file", hdr.Name)}
	}
	if err := CheckEntryName(hdr.Name); err != nil {
		return hdr.Name, nil, &entryError{r.f.Name(), fmt.Sprintf("entry %v", err)}
	}
	return hdr.Name, r.tr, nil
}

// Close releases the archive.
func (r *Reader) Close() error {
	r.zr.Close()
	return r.f.Close()
}

// Extract writes the entries wanted reports true for under dir (same relative paths), checking each against
// the manifest's sha256 as it streams. It returns the paths written. An entry that is not a regular file, or
// whose path would leave dir, stops it before anything of that entry is written.
func Extract(path, dir string, wanted func(string) bool) ([]string, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	files := map[string]File{}
	for _, f := range r.Manifest.Files {
		files[f.Path] = f
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
		dst, err := inside(dir, name)
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		f := files[name]
		n, sum, err := readEntry(content, f, dst, nil)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		if sum != f.SHA256 || n != f.Size {
			return out, fmt.Errorf("%s: sha256 %s and %d bytes, the manifest says %s and %d bytes", name, sum, n, f.SHA256, f.Size)
		}
		out = append(out, dst)
	}
}

// inside is where name goes under dir, refused unless it stays under dir, whatever Next let through.
func inside(dir, name string) (string, error) {
	if err := CheckEntryName(name); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.FromSlash(name))
	if rel, err := filepath.Rel(dir, dst); err != nil || rel == "." || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%q would be written outside %s", name, dir)
	}
	return dst, nil
}
