//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pulledImageRef is how the nodes know the image the lab bundles pull from the suite's registry.
const pulledImageRef = "registry.local/privcloud/pulled:1"

// pulledImagePull is where the lab bundles pull it from: a registry on loopback, by the digest of a
// two-platform index, the way a production bundle takes Quay's, PostgreSQL's and Redis's images. Set by
// serveUpstreamRegistry.
var pulledImagePull string

// serveUpstreamRegistry stands in for an upstream registry for the whole suite: an OCI registry on loopback
// serving a busybox image as a linux/amd64 and linux/arm64 index. Its content is the same on every run (no
// times), so its digest, and the build cache's entry for it, stay the same too.
func serveUpstreamRegistry() (stop func(), err error) {
	// a fixed port keeps the reference, and so the cache entry, the same from run to run
	ln, err := net.Listen("tcp", "127.0.0.1:5077")
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	index, err := busyboxIndex()
	if err != nil {
		srv.Close()
		return nil, err
	}
	repo := ln.Addr().String() + "/upstream/busybox"
	ref, err := name.ParseReference(repo + ":1")
	if err == nil {
		err = remote.WriteIndex(ref, index)
	}
	digest, derr := index.Digest()
	if err != nil || derr != nil {
		srv.Close()
		return nil, fmt.Errorf("push the upstream image: %v %v", err, derr)
	}
	pulledImagePull = repo + "@" + digest.String()
	return func() { srv.Close() }, nil
}

// busyboxIndex is the machine's busybox with /bin/sh, /bin/echo and /bin/sleep, as an index of two platforms
// (the arm64 entry holds the same file: it only has to be passed over).
func busyboxIndex() (v1.ImageIndex, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), Format: tar.FormatPAX})
	tw.Write(bin)
	for _, l := range []string{"sh", "echo", "sleep"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, Format: tar.FormatPAX})
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	index := v1.ImageIndex(empty.Index)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			return nil, err
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", arch
		cfg.Config.Env = []string{"PATH=/bin"}
		cfg.Config.Cmd = []string{"/bin/sh"}
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			return nil, err
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return index, nil
}
