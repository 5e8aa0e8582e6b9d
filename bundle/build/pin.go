package build

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/atomicfile"
)

// Pinned is one image.pull given by tag that Pin fixed to the digest the tag names today.
type Pinned struct {
	Component, Pull, Digest string
}

// Pin resolves every image.pull of the bundle description at path that names a tag only and writes the digest
// into the file after it (name:tag@sha256:...), leaving the rest of the file as it was: the next build pulls
// exactly what this one did, and the tag stays for the reader.
func Pin(ctx context.Context, path string, b *api.Bundle, reg Registries) ([]Pinned, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(data)
	var pinned []Pinned
	done := map[string]string{} // pull -> digest: every place a reference is written is pinned at once
	for _, c := range b.Spec.Components {
		if c.Image == nil || c.Image.Pull == "" || c.Absent != "" {
			continue
		}
		ref, err := name.ParseReference(c.Image.Pull)
		if err != nil {
			return nil, fmt.Errorf("component %s: image.pull %q: %w", c.Name, c.Image.Pull, err)
		}
		if _, byDigest := ref.(name.Digest); byDigest {
			continue
		}
		if d, ok := done[c.Image.Pull]; ok {
			pinned = append(pinned, Pinned{Component: c.Name, Pull: c.Image.Pull, Digest: d})
			continue
		}
		desc, err := remote.Head(ref, append(reg.options(), remote.WithContext(ctx))...)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", c.Name, pullError(c.Image.Pull, err))
		}
		// the reference as written, not followed by more of a reference (another tag, a digest)
		re := regexp.MustCompile(regexp.QuoteMeta(c.Image.Pull) + `([^A-Za-z0-9._:@/-]|$)`)
		if !re.MatchString(text) {
			return nil, fmt.Errorf("component %s: image.pull %q is not written as such in %s: pin it by hand", c.Name, c.Image.Pull, path)
		}
		text = re.ReplaceAllString(text, strings.ReplaceAll(c.Image.Pull, "$", "$$")+"@"+desc.Digest.String()+"${1}")
		done[c.Image.Pull] = desc.Digest.String()
		pinned = append(pinned, Pinned{Component: c.Name, Pull: c.Image.Pull, Digest: desc.Digest.String()})
	}
	if len(pinned) == 0 {
		return nil, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return pinned, atomicfile.Write(path, []byte(text), fi.Mode().Perm())
}
