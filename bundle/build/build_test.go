package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/filehash"
)

// testBundle describes one component of every source kind that works offline.
func testBundle(t *testing.T, url, urlSum string) *api.Bundle {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "tool.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho tool\n"), 0o755)
	hello, _ := filepath.Abs("../testdata/hello")
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "test"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
			{Name: "tool", Version: "1.0", File: script, Roles: []api.Role{api.RoleWorker}},
			{Name: "hello", Version: "v0.0.0", Go: &api.GoBuild{Module: "example.local/hello", Version: "v0.0.0",
				Replace: map[string]string{"example.local/hello": hello}}},
			{Name: "hello-image", Version: "1", Image: &api.Image{Ref: "registry.local/test/hello:1", FromBinary: []string{"hello"},
				User: "65535:65535", Links: map[string]string{"/bin/hi": "hello"}}},
			{Name: "quay", Version: "3.12", Image: &api.Image{Ref: "quay.io/projectquay/quay:3.12"}, Absent: "a Python application: cannot be built here"},
		}}}
	if url != "" {
		b.Spec.Components = append(b.Spec.Components, api.Component{Name: "fetched", Version: "2", URL: url, SHA256: urlSum})
	}
	return b
}

func serve(t *testing.T, body []byte) (string, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(body)
	return srv.URL + "/artifact", hex.EncodeToString(sum[:])
}

func build(t *testing.T, b *api.Bundle, cache string) (string, *bundle.Manifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.zst")
	m, err := (&Builder{Cache: cache}).Build(context.Background(), b, out)
	if err != nil {
		t.Fatal(err)
	}
	return out, m
}

func TestBuildVerifyAndContents(t *testing.T) {
	url, sum := serve(t, []byte("downloaded artifact"))
	out, m := build(t, testBundle(t, url, sum), t.TempDir())
	v, err := bundle.Verify(out, nil)
	if err != nil {
		t.Fatalf("a fresh bundle must verify: %v", err)
	}
	if v.Files != 5 { // tool, hello, hello-image, fetched, the SBOM
		t.Errorf("%d files verified, want 5", v.Files)
	}
	if c := m.Find("quay", ""); c == nil || c.Kind != "absent" || !strings.Contains(c.Absent, "cannot be built") {
		t.Errorf("absent component not recorded: %+v", c)
	}
	if c := m.Find("hello", ""); c.Origin != "go:example.local/hello@v0.0.0" || c.Path != "bin/hello/v0.0.0/hello" {
		t.Errorf("hello: %+v", c)
	}
	if c := m.Find("tool", ""); len(c.Roles) != 1 || c.Roles[0] != "worker" {
		t.Errorf("roles not recorded: %+v", c)
	}
	// the built binary runs and the SBOM lists its main module
	dir := t.TempDir()
	paths, err := bundle.Extract(out, dir, func(p string) bool { return p == "bin/hello/v0.0.0/hello" || p == bundle.SBOMName })
	if err != nil || len(paths) != 2 {
		t.Fatalf("extract: %v %v", paths, err)
	}
	sbom, _ := os.ReadFile(filepath.Join(dir, bundle.SBOMName))
	if !strings.Contains(string(sbom), `"SPDX-2.3"`) || !strings.Contains(string(sbom), "pkg:golang/example.local/hello@") {
		t.Errorf("SBOM lacks the Go module list:\n%s", sbom)
	}
}

func TestAssembledImageIsValid(t *testing.T) {
	out, m := build(t, testBundle(t, "", ""), t.TempDir())
	dir := t.TempDir()
	c := m.Find("hello-image", "")
	if _, err := bundle.Extract(out, dir, func(p string) bool { return p == c.Path }); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(c.ImageRef)
	img, err := tarball.ImageFromPath(filepath.Join(dir, c.Path), &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image digests and sizes do not hold together: %v", err)
	}
	cfg, _ := img.ConfigFile()
	if cfg.Config.Entrypoint[0] != "/bin/hello" || cfg.Config.User != "65535:65535" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("image config %+v", cfg.Config)
	}
	layers, _ := img.Layers()
	rc, _ := layers[0].Uncompressed()
	tr := tar.NewReader(rc)
	found := map[string]bool{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		found[h.Name] = true
		if h.Name == "bin/hello" && h.Mode&0o111 == 0 {
			t.Error("the binary is not executable in the image")
		}
	}
	if !found["bin/hello"] || !found["bin/hi"] || !found["tmp/"] {
		t.Errorf("layer holds %v", found)
	}
}

func TestRebuildIsCachedAndIdentical(t *testing.T) {
	cache := t.TempDir()
	b := testBundle(t, "", "")
	first, _ := build(t, b, cache)
	cached, _ := filepath.Glob(filepath.Join(cache, "go", "*", "hello"))
	if len(cached) != 1 {
		t.Fatalf("go build not cached: %v", cached)
	}
	before, _ := os.Stat(cached[0])
	second, _ := build(t, b, cache)
	after, _ := os.Stat(cached[0])
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("the cached binary was rebuilt")
	}
	a, _ := os.ReadFile(first)
	c, _ := os.ReadFile(second)
	if !bytes.Equal(a, c) {
		t.Error("the same inputs gave a different archive")
	}
	// building again into the same file with nothing changed keeps the archive as it is
	before, _ = os.Stat(second)
	if _, err := (&Builder{Cache: cache}).Build(context.Background(), b, second); err != nil {
		t.Fatal(err)
	}
	after, _ = os.Stat(second)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("an unchanged bundle was packed again")
	}
	// a changed input is noticed
	b.Spec.Components[0].Version = "1.1"
	if _, err := (&Builder{Cache: cache}).Build(context.Background(), b, second); err != nil {
		t.Fatal(err)
	}
	if r, err := bundle.Open(second); err != nil || r.Manifest.Find("tool", "1.1") == nil {
		t.Errorf("a changed bundle.yaml must be rebuilt: %v", err)
	}
}

func TestURLWithWrongDigestRefused(t *testing.T) {
	url, _ := serve(t, []byte("tampered in transit"))
	b := testBundle(t, url, strings.Repeat("ab", 32))
	_, err := (&Builder{Cache: t.TempDir()}).Build(context.Background(), b, filepath.Join(t.TempDir(), "b.tar.zst"))
	if err == nil || !strings.Contains(err.Error(), "refusing it") {
		t.Fatalf("a download that does not match its pin must be refused: %v", err)
	}
}

func TestLibraryPackageIsRefused(t *testing.T) {
	lib, _ := filepath.Abs("../testdata/lib")
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "t"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
			{Name: "lib", Version: "v0.0.0", Go: &api.GoBuild{Module: "example.local/lib", Version: "v0.0.0",
				Replace: map[string]string{"example.local/lib": lib}}},
		}}}
	_, err := (&Builder{Cache: t.TempDir()}).Build(context.Background(), b, filepath.Join(t.TempDir(), "b.tar.zst"))
	if err == nil || !strings.Contains(err.Error(), "is not a main package") {
		t.Fatalf("building a library must be refused, not packed as an archive: %v", err)
	}
}

func TestFitsMajor(t *testing.T) {
	for _, tc := range []struct {
		path, version string
		want          bool
	}{
		{"go.etcd.io/etcd/api/v3", "v3.6.16", true},
		{"go.etcd.io/etcd", "v3.6.16", false},
		{"go.etcd.io/etcd/v3", "v3.6.16", true},
		{"k8s.io/api", "v0.37.1", true},
		{"k8s.io/api/v2", "v0.37.1", false},
		{"example.com/vault", "v1.2.3", true},
	} {
		if got := fitsMajor(tc.path, tc.version); got != tc.want {
			t.Errorf("fitsMajor(%q, %q) = %v, want %v", tc.path, tc.version, got, tc.want)
		}
	}
}

// A program of a module replaced by a local folder is built again when its source changes, under the same
// version: privcloud's own programs (the API load balancer) are such modules.
func TestLocalModuleChangeIsRebuilt(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.local/hello\n\ngo 1.22\n"), 0o644)
	write := func(msg string) {
		os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\""+msg+"\") }\n"), 0o644)
	}
	write("one")
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "test"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
			{Name: "hello", Version: "v0.0.0", Go: &api.GoBuild{Module: "example.local/hello", Version: "v0.0.0", Replace: map[string]string{"example.local/hello": src}}},
		}}}
	cache := t.TempDir()
	build(t, b, cache)
	cached, _ := filepath.Glob(filepath.Join(cache, "go", "*", "hello"))
	if len(cached) != 1 {
		t.Fatalf("go build not cached: %v", cached)
	}
	first, _ := os.ReadFile(cached[0])
	write("two")
	build(t, b, cache)
	second, _ := os.ReadFile(cached[0])
	if bytes.Equal(first, second) || !bytes.Contains(second, []byte("two")) {
		t.Error("a changed local module kept its old program")
	}
}

// readEntry returns one file of a bundle.
func readEntry(t *testing.T, out, path string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := bundle.Extract(out, dir, func(p string) bool { return p == path }); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestVerifyChecksImageArchives: an image archive that is listed with its true sha256 still has to be the
// image the manifest records, down to each layer's content.
func TestVerifyChecksImageArchives(t *testing.T) {
	out, m := build(t, testBundle(t, "", ""), t.TempDir())
	img := m.Find("hello-image", "")
	if img == nil || !strings.HasPrefix(img.ImageID, "sha256:") {
		t.Fatalf("the assembled image's ID is not recorded: %+v", img)
	}
	stage := t.TempDir()
	if _, err := bundle.Extract(out, stage, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	// repackWith writes the staged files again under manifest m, each listed with its current sha256
	repackWith := func(m bundle.Manifest) string {
		t.Helper()
		for i, f := range m.Files {
			sum, size, err := filehash.SHA256(filepath.Join(stage, f.Path))
			if err != nil {
				t.Fatal(err)
			}
			m.Files[i].SHA256, m.Files[i].Size = sum, size
		}
		for i, c := range m.Components {
			for _, f := range m.Files {
				if f.Path == c.Path {
					m.Components[i].SHA256, m.Components[i].Size = f.SHA256, f.Size
				}
			}
		}
		dst := filepath.Join(t.TempDir(), "repacked.tar.zst")
		if err := writeArchive(dst, stage, &m); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	clone := func() bundle.Manifest {
		c := *m
		c.Files = append([]bundle.File(nil), m.Files...)
		c.Components = append([]bundle.Component(nil), m.Components...)
		return c
	}
	if _, err := bundle.Verify(repackWith(clone())); err != nil {
		t.Fatalf("repacked unchanged: %v", err)
	}

	other := clone()
	for i := range other.Components {
		if other.Components[i].Name == "hello-image" {
			other.Components[i].ImageID = "sha256:" + strings.Repeat("0", 64)
		}
	}
	_, err := bundle.Verify(repackWith(other))
	if err == nil || !strings.Contains(err.Error(), "the manifest records sha256:000") {
		t.Errorf("an archive of another image: %v", err)
	}

	// the layer swapped for another: the config's diff_id no longer matches
	archive := filepath.Join(stage, img.Path)
	data, _ := os.ReadFile(archive)
	var swapped bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(data)), tar.NewWriter(&swapped)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(tr)
		if strings.HasSuffix(hdr.Name, ".tar.gz") {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write([]byte("another layer"))
			zw.Close()
			body = gz.Bytes()
			hdr.Size = int64(len(body))
		}
		tw.WriteHeader(hdr)
		tw.Write(body)
	}
	tw.Close()
	os.WriteFile(archive, swapped.Bytes(), 0o644)
	_, err = bundle.Verify(repackWith(clone()))
	if err == nil || !strings.Contains(err.Error(), "layer 1 unpacks to sha256:") {
		t.Errorf("an archive with a swapped layer: %v", err)
	}
}

// Go binaries are built without symbol table and DWARF, as release builds are, unless the component asks
// for them with debug: true; both keep their build information (the SBOM reads it).
func TestGoBinariesStrippedUnlessDebug(t *testing.T) {
	hello, _ := filepath.Abs("../testdata/hello")
	cache := t.TempDir()
	sections := func(debug bool) (symtab, dwarf bool) {
		b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "test"},
			Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
				{Name: "hello", Version: "v0.0.0", Go: &api.GoBuild{Module: "example.local/hello", Version: "v0.0.0", Debug: debug,
					Replace: map[string]string{"example.local/hello": hello}}},
			}}}
		out, _ := build(t, b, cache)
		dir := t.TempDir()
		if _, err := bundle.Extract(out, dir, func(p string) bool { return p == "bin/hello/v0.0.0/hello" }); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "bin/hello/v0.0.0/hello")
		if _, err := buildinfo.ReadFile(bin); err != nil {
			t.Errorf("debug %v: the build information is gone: %v", debug, err)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return f.Section(".symtab") != nil, f.Section(".debug_info") != nil
	}
	if symtab, dwarf := sections(false); symtab || dwarf {
		t.Errorf("a default build keeps its symbol table (%v) or DWARF (%v)", symtab, dwarf)
	}
	if symtab, dwarf := sections(true); !symtab || !dwarf {
		t.Errorf("debug: true must keep the symbol table (%v) and DWARF (%v)", symtab, dwarf)
	}
}
