//go:build integration

package cmd

import (
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestBundleBuildPullsFromAPrivateRegistry drives 'bundle build --pin' against a loopback registry that wants
// credentials: the digest lands in bundle.yaml, inspect shows where the image came from, and the password shows
// up in no output of any mode.
func TestBundleBuildPullsFromAPrivateRegistry(t *testing.T) {
	const user, password = "ci", "registry-password-1234"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, _ := random.Image(256, 1)
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cfg)
	ref, _ := name.ParseReference(host + "/team/app:2")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()

	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	config := filepath.Join(dir, "config.json")
	os.WriteFile(config, []byte(`{"auths": {"`+host+`": {"auth": "`+auth+`"}}}`), 0o600)
	spec := filepath.Join(dir, "bundle.yaml")
	os.WriteFile(spec, []byte(`apiVersion: privcloud.io/v1alpha1
kind: Bundle
metadata: {name: pulled}
spec:
  platform: linux/amd64
  components:
  - {name: app, version: "2", image: {ref: "registry.local/app:2", pull: "`+host+`/team/app:2"}}
`), 0o600)
	out := filepath.Join(dir, "b.tar.zst")
	var outputs []string
	r := run(t, "bundle", "build", "-f", spec, "-o", out, "--cache", filepath.Join(dir, "cache"))
	outputs = append(outputs, r.out, r.errOut)
	if r.code == ExitOK || !strings.Contains(r.errOut, "pull "+host+"/team/app:2") || !strings.Contains(r.errOut, "--registry-config") {
		t.Errorf("a build without credentials: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	r = run(t, "bundle", "build", "-f", spec, "-o", out, "--cache", filepath.Join(dir, "cache"), "--registry-config", config, "--pin")
	outputs = append(outputs, r.out, r.errOut)
	if r.code != ExitOK || !strings.Contains(r.errOut, "pinned app: "+host+"/team/app:2@"+digest.String()) {
		t.Fatalf("build --pin: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	if data, _ := os.ReadFile(spec); !strings.Contains(string(data), `pull: "`+host+`/team/app:2@`+digest.String()+`"`) {
		t.Errorf("bundle.yaml is not pinned:\n%s", data)
	}
	for _, args := range [][]string{{"bundle", "inspect", out}, {"bundle", "inspect", out, "-o", "json"}, {"bundle", "verify", out}} {
		r = run(t, args...)
		outputs = append(outputs, r.out, r.errOut)
		if r.code != ExitOK {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.out, r.errOut)
		}
	}
	if !strings.Contains(outputs[len(outputs)-6], host+"/team/app@"+digest.String()) {
		t.Errorf("inspect does not say where the image came from:\n%s", outputs[len(outputs)-6])
	}
	r = run(t, "bundle", "build", "-f", spec, "-o", out, "--cache", filepath.Join(dir, "cache"), "--registry-config", config, "-v")
	outputs = append(outputs, r.out, r.errOut)
	for _, o := range outputs {
		if strings.Contains(o, password) || strings.Contains(o, auth) {
			t.Errorf("an output holds the registry password:\n%s", o)
		}
	}
}
