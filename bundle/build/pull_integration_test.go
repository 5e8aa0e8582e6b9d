//go:build integration

package build

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
)

// The registry these tests pull from is go-containerregistry's OCI registry, served on loopback.

func newRegistry() http.Handler { return registry.New(registry.Logger(log.New(io.Discard, "", 0))) }

// platformImageFor makes a small random image that says it is made for platform.
func platformImageFor(t *testing.T, platform string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := v1.ParsePlatform(platform)
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Architecture
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// push writes an image or an index to ref.
func push(t *testing.T, ref string, what any) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	var d v1.Hash
	switch x := what.(type) {
	case v1.Image:
		err = remote.Write(r, x)
		d, _ = x.Digest()
	case v1.ImageIndex:
		err = remote.WriteIndex(r, x)
		d, _ = x.Digest()
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func digestOf(t *testing.T, img v1.Image) (digest, id string) {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), c.String()
}

func pullBundle(platform string, pulls ...string) *api.Bundle {
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "pulled"},
		Spec: api.BundleSpec{Platform: platform}}
	for i, p := range pulls {
		b.Spec.Components = append(b.Spec.Components, api.Component{Name: fmt.Sprintf("img%d", i), Version: "1",
			Image: &api.Image{Ref: fmt.Sprintf("registry.local/pulled/img%d:1", i), Pull: p}})
	}
	return b
}

func buildWith(bl *Builder, b *api.Bundle) (*bundle.Manifest, string, error) {
	out := filepath.Join(filepath.Dir(bl.Cache), "bundle.tar.zst")
	m, err := bl.Build(context.Background(), b, out)
	return m, out, err
}

func newBuilder(t *testing.T) *Builder {
	return &Builder{Cache: filepath.Join(t.TempDir(), "cache")}
}

func TestPullByTagAndDigest(t *testing.T) {
	srv := httptest.NewServer(newRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img := platformImageFor(t, "linux/amd64")
	push(t, host+"/team/app:1.0", img)
	digest, id := digestOf(t, img)

	bl := newBuilder(t)
	m, out, err := buildWith(bl, pullBundle("linux/amd64", host+"/team/app:1.0", host+"/team/app@"+digest, host+"/team/app:1.0@"+digest))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Components {
		if c.ImageDigest != digest || c.ImageID != id || c.ImageSource != host+"/team/app@"+digest {
			t.Errorf("%s (%s): recorded digest %s, id %s, source %s; want %s, %s, %s", c.Name, c.Origin, c.ImageDigest, c.ImageID, c.ImageSource, digest, id, host+"/team/app@"+digest)
		}
	}
	if _, err := bundle.Verify(out); err != nil {
		t.Errorf("a bundle of pulled images does not verify: %v", err)
	}
	sbom := readEntry(t, out, bundle.SBOMName)
	if !strings.Contains(sbom, "pkg:oci/app@"+strings.Replace(digest, ":", "%3A", 1)) {
		t.Errorf("the SBOM does not record the pulled image's digest:\n%s", sbom)
	}

	// pinned by digest and cached: the registry is not needed again
	srv.Close()
	if _, _, err := buildWith(bl, pullBundle("linux/amd64", host+"/team/app@"+digest)); err != nil {
		t.Errorf("a cached pull by digest went to the registry: %v", err)
	}
	// a tag must be resolved again (it may have moved): the registry being gone is an error naming the image
	_, _, err = buildWith(bl, pullBundle("linux/amd64", host+"/team/app:1.0"))
	if err == nil || !strings.Contains(err.Error(), "pull "+host+"/team/app:1.0") || !strings.Contains(err.Error(), "img0") {
		t.Errorf("an unreachable registry: %v", err)
	}
}

func TestPullRefusals(t *testing.T) {
	reg := newRegistry()
	var swap string // a digest the hostile registry answers with another image's manifest
	var other []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if swap != "" && strings.HasSuffix(r.URL.Path, "/manifests/"+swap) {
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", swap)
			if r.Method == http.MethodGet {
				w.Write(other)
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	arm := platformImageFor(t, "linux/arm64")
	push(t, host+"/team/arm:1", arm)
	good := platformImageFor(t, "linux/amd64")
	goodDigest := push(t, host+"/team/good:1", good)
	bad := platformImageFor(t, "linux/amd64")
	push(t, host+"/team/bad:1", bad)
	other, _ = bad.RawManifest()
	swap = goodDigest

	missing := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ pull, want string }{
		{host + "/team/app:none", "the registry has no such image"},
		{host + "/team/good@" + missing, "the registry has no such image"},
		{host + "/team/good@" + goodDigest, "does not match requested digest"},
		{host + "/team/arm:1", "it is an image for linux/arm64, the bundle is for linux/amd64"},
		{"127.0.0.1:1/team/app:1", "connection refused"},
	} {
		_, _, err := buildWith(newBuilder(t), pullBundle("linux/amd64", tc.pull))
		if err == nil || !strings.Contains(err.Error(), "pull "+tc.pull) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull %s: got %v, want an error naming the image and saying %q", tc.pull, err, tc.want)
		}
	}
}

func TestPullResolvesAnIndexToThePlatform(t *testing.T) {
	srv := httptest.NewServer(newRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	amd, arm := platformImageFor(t, "linux/amd64"), platformImageFor(t, "linux/arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	indexDigest := push(t, host+"/team/multi:2", idx)
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		want := map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm}[platform]
		digest, id := digestOf(t, want)
		m, _, err := buildWith(newBuilder(t), pullBundle(platform, host+"/team/multi@"+indexDigest))
		if err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		c := m.Components[0]
		if c.ImageDigest != digest || c.ImageID != id || c.ImageSource != host+"/team/multi@"+indexDigest {
			t.Errorf("%s: got the image %s (id %s) from %s, want %s (id %s)", platform, c.ImageDigest, c.ImageID, c.ImageSource, digest, id)
		}
	}
	_, _, err := buildWith(newBuilder(t), pullBundle("linux/s390x", host+"/team/multi:2"))
	if err == nil || !strings.Contains(err.Error(), "no image for linux/s390x (it has linux/amd64, linux/arm64)") {
		t.Errorf("an index without the platform: %v", err)
	}
}

func TestPullWithCredentials(t *testing.T) {
	const user, password = "builder", "s3cret-registry-password"
	reg := newRegistry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img := platformImageFor(t, "linux/amd64")
	r, _ := name.ParseReference(host + "/private/app:1")
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatal(err)
	}

	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials anywhere
	t.Setenv("REGISTRY_AUTH_FILE", "")
	_, _, err := buildWith(newBuilder(t), pullBundle("linux/amd64", host+"/private/app:1"))
	if err == nil || !strings.Contains(err.Error(), "refused access") || !strings.Contains(err.Error(), "--registry-config") {
		t.Errorf("a pull without credentials: %v", err)
	}

	config := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	os.WriteFile(config, []byte(`{"auths": {"`+host+`": {"auth": "`+auth+`"}}}`), 0o600)
	for _, how := range []string{"--registry-config", "DOCKER_CONFIG"} {
		bl := newBuilder(t)
		if how == "--registry-config" {
			kc, err := RegistryConfigKeychain(config)
			if err != nil {
				t.Fatal(err)
			}
			bl.Registries.Keychain = kc
		} else {
			t.Setenv("DOCKER_CONFIG", filepath.Dir(config))
		}
		m, out, err := buildWith(bl, pullBundle("linux/amd64", host+"/private/app:1"))
		if err != nil {
			t.Fatalf("credentials from %s: %v", how, err)
		}
		manifest, _ := json.Marshal(m)
		for what, content := range map[string]string{"manifest": string(manifest), "SBOM": readEntry(t, out, bundle.SBOMName)} {
			if strings.Contains(content, password) || strings.Contains(content, auth) {
				t.Errorf("the bundle's %s holds the registry password", what)
			}
		}
	}
}

func TestPullOverTLSWithAPrivateCA(t *testing.T) {
	srv := httptest.NewUnstartedServer(newRegistry())
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	// the registry is known as example.com (its certificate's name); every connection goes to the loopback server
	toLoopback := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	img := platformImageFor(t, "linux/amd64")
	r, _ := name.ParseReference("example.com/team/app:1")
	pushTransport := &http.Transport{DialContext: toLoopback, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if err := remote.Write(r, img, remote.WithTransport(pushTransport)); err != nil {
		t.Fatal(err)
	}

	untrusted := remote.DefaultTransport.(*http.Transport).Clone()
	untrusted.DialContext, untrusted.Proxy = toLoopback, nil
	bl := newBuilder(t)
	bl.Registries.Transport = untrusted
	_, _, err := buildWith(bl, pullBundle("linux/amd64", "example.com/team/app:1"))
	if err == nil || !strings.Contains(err.Error(), "--registry-ca") {
		t.Errorf("a registry behind an unknown CA: %v", err)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	rt, err := TransportTrusting(ca)
	if err != nil {
		t.Fatal(err)
	}
	trusted := rt.(*http.Transport)
	trusted.DialContext, trusted.Proxy = toLoopback, nil
	bl = newBuilder(t)
	bl.Registries.Transport = trusted
	m, _, err := buildWith(bl, pullBundle("linux/amd64", "example.com/team/app:1"))
	if err != nil {
		t.Fatalf("a registry behind a CA given with --registry-ca: %v", err)
	}
	if digest, _ := digestOf(t, img); m.Components[0].ImageDigest != digest {
		t.Errorf("pulled %s, pushed %s", m.Components[0].ImageDigest, digest)
	}
}

func TestPinWritesTheDigestsIntoTheDescription(t *testing.T) {
	srv := httptest.NewServer(newRegistry())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img := platformImageFor(t, "linux/amd64")
	digest := push(t, host+"/team/app:1.0", img)
	path := filepath.Join(t.TempDir(), "bundle.yaml")
	spec := `apiVersion: privcloud.io/v1alpha1
kind: Bundle
metadata: {name: pinned}
spec:
  components:
  # the application, by tag until pinned
  - {name: app, version: "1.0", image: {ref: "registry.local/app:1.0", pull: "` + host + `/team/app:1.0"}}
  - name: app-again
    version: "1.0"
    image:
      ref: registry.local/app:1.0-again
      pull: ` + host + `/team/app:1.0
`
	os.WriteFile(path, []byte(spec), 0o640)
	b, err := api.LoadBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := Pin(context.Background(), path, b, Registries{})
	if err != nil || len(pinned) != 2 {
		t.Fatalf("pin: %v %v", pinned, err)
	}
	got, _ := os.ReadFile(path)
	want := strings.ReplaceAll(spec, host+"/team/app:1.0", host+"/team/app:1.0@"+digest)
	if string(got) != want {
		t.Errorf("the pinned description:\n%s\nwant:\n%s", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("pinning changed the file's mode to %v", fi.Mode().Perm())
	}
	b, err = api.LoadBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Pin(context.Background(), path, b, Registries{}); err != nil || len(again) != 0 {
		t.Errorf("pinning a pinned description again: %v %v", again, err)
	}
}
