package v1alpha1

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// KindBundle is the kind of a bundle.yaml: what an air-gap bundle holds and where each piece comes from.
const KindBundle = "Bundle"

// DefaultPlatform is the os/arch bundles are built for.
const DefaultPlatform = "linux/amd64"

// Bundle describes an air-gap bundle.
type Bundle struct {
	APIVersion string     `json:"apiVersion" enum:"privcloud.io/v1alpha1" doc:"Always privcloud.io/v1alpha1."`
	Kind       string     `json:"kind" enum:"Bundle" doc:"Always Bundle."`
	Metadata   ObjectMeta `json:"metadata" doc:"Identity of the bundle."`
	Spec       BundleSpec `json:"spec" doc:"What the bundle holds."`
}

// BundleSpec lists the components.
type BundleSpec struct {
	Platform   string      `json:"platform,omitempty" doc:"os/arch every binary is built for and every image is made for."`
	Components []Component `json:"components" doc:"Binaries and images, each from exactly one source."`
}

// Component is one binary or image of the bundle.
type Component struct {
	Name    string   `json:"name" doc:"Component name (a DNS label); binaries are installed under this name."`
	Version string   `json:"version" doc:"Version, recorded in the manifest; binaries of several versions sit side by side on hosts."`
	Roles   []Role   `json:"roles,omitempty" doc:"Hosts that receive it; empty: every host."`
	File    string   `json:"file,omitempty" doc:"Source: a local file, relative to bundle.yaml."`
	URL     string   `json:"url,omitempty" doc:"Source: a download (at build time only), checked against sha256."`
	SHA256  string   `json:"sha256,omitempty" doc:"The pinned sha256 of what url serves (hex)."`
	Go      *GoBuild `json:"go,omitempty" doc:"Source: a Go package built with CGO_ENABLED=0 and -trimpath through the Go module proxy."`
	Image   *Image   `json:"image,omitempty" doc:"This component is a container image."`
	Absent  string   `json:"absent,omitempty" doc:"Recorded in the manifest as missing, with this reason, so what needs it can say so."`
	// A binary only images are made of: packed, never installed on hosts.
	ImageOnly bool `json:"imageOnly,omitempty" doc:"A binary used only to assemble images: it is not installed on hosts."`
}

// GoBuild builds one package of a module version.
type GoBuild struct {
	Module  string            `json:"module" doc:"Module path, e.g. go.etcd.io/etcd/server/v3."`
	Version string            `json:"version" doc:"Module version, e.g. v3.6.5."`
	Package string            `json:"package,omitempty" doc:"Package to build; default: the module itself."`
	Replace map[string]string `json:"replace,omitempty" doc:"replace directives of the wrapper module (module path -> module@version, or a local folder relative to bundle.yaml)."`
	LDFlags string            `json:"ldflags,omitempty" doc:"-ldflags, e.g. to stamp versions with -X."`
	Tags    []string          `json:"tags,omitempty" doc:"Build tags, e.g. seccomp for runc (with cgo and the C library's -dev package on the build machine)."`
	Debug   bool              `json:"debug,omitempty" doc:"Keep the symbol table and DWARF debug information, for a debugger. Default: stripped (-ldflags -s -w, as Kubernetes' release builds are): a third smaller to send to every host; panics still print their stacks."`
	CGO     bool              `json:"cgo,omitempty" doc:"Build with cgo (runc's nsenter is C): the binary then links the build machine's C library, so build on the hosts' distribution. Default: CGO_ENABLED=0, a static binary."`
	// k8s.io/kubernetes and etcd replace their own submodules with folders of their repository; a wrapper
	// module needs the published versions instead.
	StagingVersion string `json:"stagingVersion,omitempty" doc:"For modules whose go.mod replaces modules with folders of their own repository (k8s.io/kubernetes' ./staging, etcd's ./api): the published version to use for each of them, e.g. v0.37.1 for Kubernetes v1.37.1, v3.7.0 for etcd v3.7.0."`
}

// Image is how an image component is made.
type Image struct {
	Ref        string            `json:"ref" doc:"Reference the nodes know the image by, e.g. registry.k8s.io/pause:3.10."`
	Pull       string            `json:"pull,omitempty" doc:"Pull this reference from a registry at build time."`
	FromBinary []string          `json:"fromBinary,omitempty" doc:"Assemble the image from these binary components, each at /bin/NAME (the first is the entrypoint unless entrypoint says otherwise)."`
	Links      map[string]string `json:"links,omitempty" doc:"Symlinks in the image (path -> target), e.g. /bin/sh -> busybox."`
	Entrypoint []string          `json:"entrypoint,omitempty" doc:"Entrypoint of an assembled image."`
	User       string            `json:"user,omitempty" doc:"User of an assembled image, e.g. 65535:65535."`
	Labels     map[string]string `json:"labels,omitempty" doc:"Labels of an assembled image."`
}

// Kind says what the component is: "binary", "image" or "absent".
func (c *Component) Kind() string {
	switch {
	case c.Absent != "":
		return "absent"
	case c.Image != nil:
		return "image"
	}
	return "binary"
}

// LoadBundle reads a bundle.yaml strictly, defaults and validates it; local paths are made absolute.
func LoadBundle(path string) (*Bundle, error) {
	data, err := readDocument(path, "bundle description")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var b Bundle
	lines, err := decodeStrict(data, KindBundle, &b)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.File = path
		}
		return nil, err
	}
	if b.Spec.Platform == "" {
		b.Spec.Platform = DefaultPlatform
	}
	base := filepath.Dir(abs)
	for i := range b.Spec.Components {
		c := &b.Spec.Components[i]
		if c.File != "" {
			c.File = localPath(c.File, base, "")
		}
		if c.Go != nil {
			for m, r := range c.Go.Replace {
				if strings.HasPrefix(r, ".") || strings.HasPrefix(r, "/") {
					c.Go.Replace[m] = localPath(r, base, "")
				}
			}
		}
	}
	if ve := ValidateBundle(&b); ve != nil {
		ve.File = path
		for i := range ve.Errors {
			ve.Errors[i].Line = lines.find(ve.Errors[i].Path)
		}
		return nil, ve
	}
	return &b, nil
}

var (
	hexDigestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	platformRE  = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`)
)

// ValidateBundle returns every problem of a bundle description, or nil.
func ValidateBundle(b *Bundle) *ValidationError {
	v := &validator{}
	if !isDNSLabel(b.Metadata.Name) {
		v.add("metadata.name", "%q is not a DNS label", b.Metadata.Name)
	}
	if !platformRE.MatchString(b.Spec.Platform) {
		v.add("spec.platform", "%q is not os/arch, e.g. linux/amd64", b.Spec.Platform)
	}
	if len(b.Spec.Components) == 0 {
		v.add("spec.components", "at least one component is required")
	}
	kinds := map[string]string{}
	for _, c := range b.Spec.Components {
		kinds[c.Name] = c.Kind()
	}
	seen := map[string]bool{}
	for i, c := range b.Spec.Components {
		p := fmt.Sprintf("spec.components[%d]", i)
		switch {
		case !isDNSLabel(c.Name):
			v.add(p+".name", "%q is not a DNS label", c.Name)
		case seen[c.Name+"@"+c.Version]:
			v.add(p+".name", "%s %s is listed twice", c.Name, c.Version)
		}
		seen[c.Name+"@"+c.Version] = true
		if strings.TrimSpace(c.Version) == "" {
			v.add(p+".version", "must not be empty")
		}
		if len(c.Roles) > 0 {
			v.roles(p+".roles", c.Roles)
		}
		sources := 0
		for _, set := range []bool{c.File != "", c.URL != "", c.Go != nil, c.Image != nil && c.Image.Pull != "", c.Image != nil && len(c.Image.FromBinary) > 0, c.Absent != ""} {
			if set {
				sources++
			}
		}
		if sources != 1 {
			v.add(p, "needs exactly one source (file, url, go, image.pull, image.fromBinary or absent), has %d", sources)
		}
		if c.URL != "" && !hexDigestRE.MatchString(c.SHA256) {
			v.add(p+".sha256", "a url needs its pinned sha256 (64 lowercase hex digits)")
		}
		if c.Go != nil {
			if c.Go.Module == "" {
				v.add(p+".go.module", "must not be empty")
			}
			if !strings.HasPrefix(c.Go.Version, "v") {
				v.add(p+".go.version", "%q is not a module version such as v3.6.5", c.Go.Version)
			}
			if c.Go.StagingVersion != "" && !strings.HasPrefix(c.Go.StagingVersion, "v") {
				v.add(p+".go.stagingVersion", "%q is not a module version such as v0.37.1", c.Go.StagingVersion)
			}
		}
		if c.Image != nil {
			if c.Image.Ref == "" {
				v.add(p+".image.ref", "must not be empty")
			}
			for j, bin := range c.Image.FromBinary {
				if kinds[bin] != "binary" {
					v.add(fmt.Sprintf("%s.image.fromBinary[%d]", p, j), "%q is not a binary component of this bundle", bin)
				}
			}
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}
