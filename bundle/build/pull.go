package build

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// pulledImage is an image archive fetched from a registry, with what identifies it.
type pulledImage struct {
	Path string `json:"-"`
	// Source is the repository and the digest the reference resolved to (an index for multi-platform images).
	Source string `json:"source"`
	// Digest is the digest of the platform's image manifest.
	Digest string `json:"digest"`
	// ID is the digest of the image's config: what containerd and docker call the image's ID.
	ID string `json:"id"`
}

// pull fetches img.Pull for the platform (at build time only) as a docker-archive tagged img.Ref. A reference
// by digest must resolve to exactly that content (a registry serving anything else is refused) and, once
// cached, needs no registry at all; a tag is resolved to its current digest on every build and the archive
// cached by that digest. A multi-platform index resolves to the platform's image; a single image must be made
// for the platform.
func (bl *Builder) pull(ctx context.Context, img *api.Image, platform string) (*pulledImage, error) {
	ref, err := name.ParseReference(img.Pull)
	if err != nil {
		return nil, fmt.Errorf("image.pull %q: %w", img.Pull, err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	cache := func(resolved string) string {
		return filepath.Join(bl.Cache, "images", cacheKey(ref.Context().Name(), resolved, platform, img.Ref))
	}
	if d, ok := ref.(name.Digest); ok {
		if cached, ok := readPulled(cache(d.DigestStr())); ok {
			return cached, nil
		}
	}
	opts := append(bl.Registries.options(), remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, pullError(img.Pull, err)
	}
	out := cache(desc.Digest.String())
	if cached, ok := readPulled(out); ok {
		return cached, nil
	}
	image, err := platformImage(img.Pull, desc, *p)
	if err != nil {
		return nil, err
	}
	digest, err := image.Digest()
	if err != nil {
		return nil, pullError(img.Pull, err)
	}
	id, err := image.ConfigName()
	if err != nil {
		return nil, pullError(img.Pull, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	// layers are fetched here, each checked against its digest by the registry client
	if err := writeImage(img.Ref, image, out+".tar"); err != nil {
		return nil, pullError(img.Pull, err)
	}
	pulled := &pulledImage{Path: out + ".tar", Source: ref.Context().Name() + "@" + desc.Digest.String(), Digest: digest.String(), ID: id.String()}
	data, err := json.Marshal(pulled)
	if err != nil {
		return nil, err
	}
	tmp := out + ".json.tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return nil, err
	}
	return pulled, os.Rename(tmp, out+".json")
}

// readPulled reads a cached pull: the archive and its record, written last.
func readPulled(base string) (*pulledImage, bool) {
	data, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, false
	}
	var p pulledImage
	if json.Unmarshal(data, &p) != nil {
		return nil, false
	}
	if _, err := os.Stat(base + ".tar"); err != nil {
		return nil, false
	}
	p.Path = base + ".tar"
	return &p, true
}

// platformImage picks the platform's image of an index, or checks that a single image is made for it.
func platformImage(pull string, desc *remote.Descriptor, want v1.Platform) (v1.Image, error) {
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, pullError(pull, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, pullError(pull, err)
		}
		var offered []string
		for _, m := range im.Manifests {
			if m.Platform == nil || !m.MediaType.IsImage() {
				continue
			}
			if m.Platform.Satisfies(want) {
				return idx.Image(m.Digest)
			}
			if m.Platform.OS != "unknown" { // attestations
				offered = append(offered, m.Platform.String())
			}
		}
		return nil, fmt.Errorf("pull %s: it has no image for %s (it has %s)", pull, want.String(), strings.Join(offered, ", "))
	case desc.MediaType.IsImage():
		image, err := desc.Image()
		if err != nil {
			return nil, pullError(pull, err)
		}
		cfg, err := image.ConfigFile()
		if err != nil {
			return nil, pullError(pull, err)
		}
		got := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		if !got.Satisfies(want) {
			return nil, fmt.Errorf("pull %s: it is an image for %s, the bundle is for %s (spec.platform)", pull, got.String(), want.String())
		}
		return image, nil
	}
	return nil, fmt.Errorf("pull %s: %s is neither an image nor an index", pull, desc.MediaType)
}

// pullError names the image and says what to do about the usual causes.
func pullError(pull string, err error) error {
	var te *transport.Error
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("pull %s: the registry has no such image (%w)", pull, err)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return fmt.Errorf("pull %s: the registry refused access: give its credentials in a Docker-style config (--registry-config, or $DOCKER_CONFIG/config.json) (%w)", pull, err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("pull %s: the registry's certificate is not signed by a trusted CA: pass its CA with --registry-ca (%w)", pull, err)
	}
	return fmt.Errorf("pull %s: %w", pull, err)
}
