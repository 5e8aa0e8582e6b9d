package build

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// assemble makes an image of the given binaries (each at /bin/NAME) and links, and writes it as a
// docker-archive tarball tagged img.Ref, which containerd imports. It returns the image's ID.
func assemble(img *api.Image, platform string, binaries map[string]string, out string) (string, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := []string{"bin", "etc", "tmp"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
	}
	for _, b := range img.FromBinary {
		data, err := os.ReadFile(binaries[b])
		if err != nil {
			return "", err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + b, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
	}
	links := make([]string, 0, len(img.Links))
	for l := range img.Links {
		links = append(links, l)
	}
	sort.Strings(links)
	for _, l := range links {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(l, "/"), Typeflag: tar.TypeSymlink, Linkname: img.Links[l], Mode: 0o777, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	image, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return "", err
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	entrypoint := img.Entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{"/bin/" + img.FromBinary[0]}
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = goos, goarch
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.User = img.User
	cfg.Config.Env = []string{"PATH=/bin"}
	cfg.Config.Labels = img.Labels
	cfg.History = []v1.History{{CreatedBy: "privcloud bundle: from " + strings.Join(img.FromBinary, ", ")}}
	image, err = mutate.ConfigFile(image, cfg)
	if err != nil {
		return "", err
	}
	id, err := image.ConfigName()
	if err != nil {
		return "", err
	}
	return id.String(), writeImage(img.Ref, image, out)
}

func writeImage(ref string, image v1.Image, out string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, image); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
