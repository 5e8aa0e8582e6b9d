// Package build makes privcloud's air-gap bundles: it builds, downloads and pulls every component (each
// cached), assembles images of our own binaries, writes the SBOM and packs the archive package bundle reads.
// Only the bundle command needs it, so installs do not compile the image and Go toolchain code.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/filehash"
)

// Builder makes bundles. Build outputs (Go binaries, downloads, pulled images) are cached under Cache, keyed by
// everything that determines them, so a rebuild with nothing changed only packs the archive.
type Builder struct {
	Cache string
	Log   io.Writer
	// HTTP fetches url sources (http.DefaultClient when nil).
	HTTP *http.Client
	// Progress, when set, hears of each step as it starts: a cold build takes many minutes.
	Progress func(Progress)
	// Registries is how image.pull reaches registries.
	Registries Registries
}

// Progress is one step of a build: resolving a component (a Go build, a download, a pull; cached ones pass at
// once), then packing the archive.
type Progress struct {
	Step, Steps   int
	Action        string // build, download, pull, file, pack
	Name, Version string
}

func (bl *Builder) progress(p Progress) {
	if bl.Progress != nil {
		bl.Progress(p)
	}
}

// Build makes the bundle b describes and writes it to out.
func (bl *Builder) Build(ctx context.Context, b *api.Bundle, out string) (*bundle.Manifest, error) {
	if ve := api.ValidateBundle(b); ve != nil {
		return nil, ve
	}
	// Resolve every source first (cached builds and downloads are instant), then skip everything else when
	// out was packed from exactly these inputs: a rebuild with nothing changed costs seconds, not a repack.
	resolved, pulled, key, err := bl.resolve(ctx, b)
	if err != nil {
		return nil, err
	}
	if m, ok := packedFrom(out, key); ok {
		return m, nil
	}
	bl.progress(Progress{Step: len(resolved) + 1, Steps: len(resolved) + 1, Action: "pack", Name: filepath.Base(out)})
	stage, err := os.MkdirTemp(filepath.Dir(absPath(out)), ".bundle-stage-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	m := &bundle.Manifest{APIVersion: api.APIVersion, Kind: "BundleManifest", Name: b.Metadata.Name, Platform: b.Spec.Platform}
	binaries := map[string]string{} // component name -> staged path
	// binaries first: images may be assembled from them
	ordered := append([]api.Component(nil), b.Spec.Components...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Kind() == "binary" && ordered[j].Kind() != "binary" })
	for _, c := range ordered {
		mc := bundle.Component{Name: c.Name, Version: c.Version, Kind: c.Kind(), Roles: roleNames(c.Roles), ImageOnly: c.ImageOnly}
		var src string
		switch {
		case c.Absent != "":
			mc.Absent, mc.Origin = c.Absent, "absent"
			if c.Image != nil {
				mc.ImageRef = c.Image.Ref
			}
			m.Components = append(m.Components, mc)
			continue
		case c.File != "":
			src, mc.Origin = resolved[c.Name+"@"+c.Version], "file:"+c.File
		case c.URL != "":
			src, mc.Origin = resolved[c.Name+"@"+c.Version], c.URL
		case c.Go != nil:
			src, mc.Origin = resolved[c.Name+"@"+c.Version], fmt.Sprintf("go:%s@%s", goPackage(c.Go), c.Go.Version)
		case c.Image.Pull != "":
			p := pulled[c.Name+"@"+c.Version]
			src, mc.Origin, mc.ImageRef = p.Path, "image:"+c.Image.Pull, c.Image.Ref
			mc.ImageSource, mc.ImageDigest, mc.ImageID = p.Source, p.Digest, p.ID
		default:
			mc.Origin, mc.ImageRef = "from-binary:"+strings.Join(c.Image.FromBinary, ","), c.Image.Ref
			src = filepath.Join(stage, ".assembled-"+c.Name+".tar")
			mc.ImageID, err = assemble(c.Image, b.Spec.Platform, binaries, src)
		}
		if err != nil {
			return nil, fmt.Errorf("component %s %s: %w", c.Name, c.Version, err)
		}
		mc.Path = path.Join(map[bool]string{true: "images", false: "bin"}[c.Image != nil], c.Name, c.Version, c.Name)
		if c.Image != nil {
			mc.Path += ".tar"
		}
		f, err := stageFile(src, stage, mc.Path)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, err)
		}
		mc.SHA256, mc.Size = f.SHA256, f.Size
		m.Files = append(m.Files, f)
		m.Components = append(m.Components, mc)
		if c.Image == nil {
			binaries[c.Name] = filepath.Join(stage, mc.Path)
		}
	}
	// the manifest keeps the order of bundle.yaml
	order := map[string]int{}
	for i, c := range b.Spec.Components {
		order[c.Name+"@"+c.Version] = i
	}
	sort.SliceStable(m.Components, func(i, j int) bool {
		return order[m.Components[i].Name+"@"+m.Components[i].Version] < order[m.Components[j].Name+"@"+m.Components[j].Version]
	})
	sbom, err := spdx(m, stage)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, bundle.SBOMName), sbom, 0o644); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(sbom)
	m.Files = append(m.Files, bundle.File{Path: bundle.SBOMName, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(sbom))})
	if err := writeArchive(out, stage, m); err != nil {
		return nil, err
	}
	return m, os.WriteFile(out+".inputs", []byte(key+"\n"), 0o644)
}

// archiveFormat changes when the archive's layout or manifest does: old archives are then rebuilt.
const archiveFormat = "2"

// resolve makes every source available locally (downloaded, built or pulled, each cached) but the images
// assembled from binaries, and returns them by name@version (pulled images with what identifies them) with
// a key of all the build's inputs.
func (bl *Builder) resolve(ctx context.Context, b *api.Bundle) (map[string]string, map[string]*pulledImage, string, error) {
	spec, err := json.Marshal(b)
	if err != nil {
		return nil, nil, "", err
	}
	inputs := []string{archiveFormat, string(spec)}
	resolved := map[string]string{}
	pulled := map[string]*pulledImage{}
	steps := 0
	for _, c := range b.Spec.Components {
		if !(c.Absent != "" || (c.Image != nil && len(c.Image.FromBinary) > 0)) {
			steps++
		}
	}
	steps++ // packing
	for _, c := range b.Spec.Components {
		var src string
		step := Progress{Step: len(resolved) + 1, Steps: steps, Name: c.Name, Version: c.Version}
		switch {
		case c.Absent != "" || (c.Image != nil && len(c.Image.FromBinary) > 0):
			continue
		case c.File != "":
			step.Action = "file"
			bl.progress(step)
			src = c.File
		case c.URL != "":
			step.Action = "download"
			bl.progress(step)
			src, err = bl.download(ctx, c.URL, c.SHA256)
		case c.Go != nil:
			step.Action = "build"
			bl.progress(step)
			src, err = bl.goBuild(ctx, c.Go, b.Spec.Platform, c.Name)
		default:
			step.Action = "pull"
			bl.progress(step)
			var p *pulledImage
			if p, err = bl.pull(ctx, c.Image, b.Spec.Platform); err == nil {
				src, pulled[c.Name+"@"+c.Version] = p.Path, p
			}
		}
		if err != nil {
			return nil, nil, "", fmt.Errorf("component %s %s: %w", c.Name, c.Version, err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, nil, "", fmt.Errorf("component %s %s: %w", c.Name, c.Version, err)
		}
		resolved[c.Name+"@"+c.Version] = src
		// cached artifacts never change in place; a local file is identified by its size and time
		inputs = append(inputs, fmt.Sprintf("%s@%s %s %d %d", c.Name, c.Version, src, fi.Size(), fi.ModTime().UnixNano()))
	}
	return resolved, pulled, cacheKey(inputs...), nil
}

// packedFrom returns out's manifest when out was packed from inputs key and is still there.
func packedFrom(out, key string) (*bundle.Manifest, bool) {
	recorded, err := os.ReadFile(out + ".inputs")
	if err != nil || strings.TrimSpace(string(recorded)) != key {
		return nil, false
	}
	r, err := bundle.Open(out)
	if err != nil {
		return nil, false
	}
	defer r.Close()
	return r.Manifest, true
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func roleNames(rs []api.Role) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r))
	}
	return out
}

// stageFile hard-links (or copies) src into the stage at rel and hashes it.
func stageFile(src, stage, rel string) (bundle.File, error) {
	dst := filepath.Join(stage, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return bundle.File{}, err
	}
	if err := os.Link(src, dst); err != nil {
		if err := copyFile(src, dst); err != nil {
			return bundle.File{}, err
		}
	}
	sum, size, err := filehash.SHA256(dst)
	return bundle.File{Path: rel, SHA256: sum, Size: size}, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cacheKey names a cache entry after everything that determines its content.
func cacheKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// download fetches url into the cache by its pinned digest; a cached copy is used as is.
func (bl *Builder) download(ctx context.Context, url, want string) (string, error) {
	dst := filepath.Join(bl.Cache, "download", want)
	if sum, _, err := filehash.SHA256(dst); err == nil && sum == want {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := bl.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), resp.Body); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("%s has sha256 %s, but %s is pinned: refusing it", url, got, want)
	}
	return dst, os.Rename(tmp.Name(), dst)
}

func goPackage(g *api.GoBuild) string {
	if g.Package != "" {
		return g.Package
	}
	return g.Module
}

// replacedLocally reports whether a replace of g points at a folder on this machine.
func replacedLocally(g *api.GoBuild) bool {
	for _, to := range g.Replace {
		if strings.HasPrefix(to, ".") || strings.HasPrefix(to, "/") {
			return true
		}
	}
	return false
}

// goBuild builds a package of a module version in a wrapper module (its replace directives make modules
// such as k8s.io/kubernetes buildable), statically and reproducibly, and caches the binary.
func (bl *Builder) goBuild(ctx context.Context, g *api.GoBuild, platform, name string) (string, error) {
	goos, goarch, _ := strings.Cut(platform, "/")
	var replaces []string
	for m, r := range g.Replace {
		replaces = append(replaces, m+"=>"+r)
	}
	sort.Strings(replaces)
	ldflags := g.LDFlags
	if !g.Debug {
		ldflags = strings.TrimSpace("-s -w " + ldflags)
	}
	key := cacheKey(g.Module, g.Version, goPackage(g), ldflags, platform, runtime.Version(), strings.Join(replaces, ";"), g.StagingVersion, fmt.Sprint(g.CGO), strings.Join(g.Tags, ","))
	out := filepath.Join(bl.Cache, "go", key, name)
	// a module replaced by a local folder (privcloud's own programs) can change under the same version: it is
	// built each time, which Go's build cache makes quick, and the cached file kept when nothing changed
	if _, err := os.Stat(out); err == nil && !replacedLocally(g) {
		return out, nil
	}
	work := filepath.Join(bl.Cache, "go", key+".src")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	var mod strings.Builder
	fmt.Fprintf(&mod, "module privcloud.local/bundle-build\n\ngo 1.26\n\nrequire %s %s\n", g.Module, g.Version)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(mod.String()), 0o644); err != nil {
		return "", err
	}
	all := map[string]string{}
	if _, local := g.Replace[g.Module]; !local {
		inherited, err := inheritedReplaces(ctx, work, g.Module, g.Version, g.StagingVersion)
		if err != nil {
			return "", err
		}
		all = inherited
	}
	for from, to := range g.Replace { // bundle.yaml's own replaces win
		if at := strings.LastIndex(to, "@"); at > 0 && !strings.HasPrefix(to, "/") {
			to = to[:at] + " " + to[at+1:]
		}
		all[from] = to
	}
	froms := make([]string, 0, len(all))
	for f := range all {
		froms = append(froms, f)
	}
	sort.Strings(froms)
	for _, f := range froms {
		fmt.Fprintf(&mod, "replace %s => %s\n", f, all[f])
	}
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(mod.String()), 0o644); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-trimpath", "-tags", strings.Join(g.Tags, ","), "-ldflags", ldflags, "-o", tmp, goPackage(g))
	cmd.Dir = work
	cgo := "0"
	if g.CGO {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo, "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = bl.log(), io.MultiWriter(bl.log(), &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s@%s: %w\n%s", goPackage(g), g.Version, err, lastLines(stderr.String(), 15))
	}
	// For a package that is not main, go build -o writes an object archive, not a program.
	if _, err := buildinfo.ReadFile(tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("%s@%s is not a main package: it builds no program", goPackage(g), g.Version)
	}
	// a rebuild of a local module that gave the same program keeps the cached file as it was, so nothing
	// after it (the archive) is made again
	if same, _ := sameContent(tmp, out); same {
		return out, os.Remove(tmp)
	}
	return out, os.Rename(tmp, out)
}

// sameContent reports whether files a and b hold the same bytes.
func sameContent(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

// inheritedReplaces reads module@version's go.mod and returns its replace directives for a wrapper module:
// `go install module@version` refuses modules that have any, yet their binaries are built with them. Replaces
// pointing at folders of the module's own repository (k8s.io/kubernetes' ./staging, etcd's ./api) cannot be
// followed from outside it: they are pinned to the published version named by stagingVersion.
func inheritedReplaces(ctx context.Context, dir, module, version, staging string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = dir
	out, err := cmd.Output()
	var info struct{ GoMod, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.GoMod == "" {
		return nil, fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, info.Error)
	}
	data, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, err
	}
	replaces := map[string]string{}
	inBlock := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.SplitN(line, "//", 2)[0])
		switch {
		case line == "replace (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "replace "):
			line = strings.TrimPrefix(line, "replace ")
		case !inBlock:
			continue
		}
		from, to, ok := strings.Cut(line, "=>")
		if !ok {
			continue
		}
		fromPath := strings.Fields(from)[0]
		target := strings.Fields(to)
		switch {
		case len(target) == 2:
			replaces[fromPath] = target[0] + " " + target[1]
		case len(target) == 1 && staging != "" && !fitsMajor(fromPath, staging):
			// a guard, not a staging module: etcd's go.mod sends go.etcd.io/etcd to ./FORBIDDEN_DEPENDENCY so
			// that nothing imports it, and no version of its could be the staging one
		case len(target) == 1 && staging != "":
			replaces[fromPath] = fromPath + " " + staging
		case len(target) == 1:
			return nil, fmt.Errorf("%s@%s replaces %s with the local folder %s: set go.stagingVersion, or go.replace for it", module, version, fromPath, target[0])
		}
	}
	return replaces, nil
}

// fitsMajor tells whether version can be a version of the module path: a path ending in /vN takes vN.x.y
// versions, any other v0 or v1.
func fitsMajor(path, version string) bool {
	major, _, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	if i := strings.LastIndex(path, "/v"); i >= 0 {
		if n := path[i+2:]; n != "" && strings.Trim(n, "0123456789") == "" {
			return n == major
		}
	}
	return major == "0" || major == "1"
}

func (bl *Builder) log() io.Writer {
	if bl.Log == nil {
		return io.Discard
	}
	return bl.Log
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
