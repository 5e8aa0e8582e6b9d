package cmd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestBundleCommands(t *testing.T) {
	dir := t.TempDir()
	hello, _ := filepath.Abs("../bundle/testdata/hello")
	os.WriteFile(filepath.Join(dir, "tool.sh"), []byte("#!/bin/sh\necho tool\n"), 0o755)
	spec := filepath.Join(dir, "bundle.yaml")
	os.WriteFile(spec, []byte(`apiVersion: privcloud.io/v1alpha1
kind: Bundle
metadata: {name: test}
spec:
  components:
  - {name: tool, version: "1.0", file: tool.sh, roles: [worker]}
  - name: hello
    version: v0.0.0
    go: {module: example.local/hello, version: v0.0.0, replace: {example.local/hello: `+hello+`}}
  - {name: hello-image, version: "1", image: {ref: "registry.local/hello:1", fromBinary: [hello]}}
  - {name: quay, version: "3.12", image: {ref: "quay.io/projectquay/quay:3.12"}, absent: "cannot be built here"}
`), 0o600)
	out := filepath.Join(dir, "b.tar.zst")
	r := run(t, "bundle", "build", "-f", spec, "-o", out, "--cache", filepath.Join(dir, "cache"))
	if r.code != ExitOK || !strings.Contains(r.out, "wrote "+out+" (4 components") || !strings.Contains(r.out, "ABSENT: cannot be built here") {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	r = run(t, "bundle", "inspect", out)
	if r.code != ExitOK || !strings.Contains(r.out, "hello-image") || !strings.Contains(r.out, "worker") ||
		!regexp.MustCompile(`registry.local/hello:1 +sha256:[0-9a-f]{12} +assembled: hello`).MatchString(r.out) {
		t.Errorf("inspect: exit %d\n%s", r.code, r.out)
	}
	key := filepath.Join(dir, "signing.key")
	if r = run(t, "bundle", "keygen", "--out", key); r.code != ExitOK {
		t.Fatal(r.errOut)
	}
	if r = run(t, "bundle", "keygen", "--out", key); r.code != ExitUsage {
		t.Errorf("keygen must not overwrite a key: exit %d", r.code)
	}
	if r = run(t, "bundle", "verify", out, "--pub", key+".pub"); r.code != ExitPhaseFailed || !strings.Contains(r.errOut, "no signature") {
		t.Errorf("unsigned bundle with --pub: exit %d %s", r.code, r.errOut)
	}
	if r = run(t, "bundle", "sign", out, "--key", key); r.code != ExitOK {
		t.Fatal(r.errOut)
	}
	if r = run(t, "bundle", "verify", out, "--pub", key+".pub"); r.code != ExitOK || !strings.Contains(r.out, "4 files verified against the manifest, 1 image archives against their image IDs") || !strings.Contains(r.out, "signature verified") {
		t.Errorf("signed bundle: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	// a misspelled field in bundle.yaml names the field and line, as for cluster.yaml
	os.WriteFile(spec, []byte("apiVersion: privcloud.io/v1alpha1\nkind: Bundle\nmetadata: {name: t}\nspec:\n  components:\n  - {name: x, version: '1', fiel: a}\n"), 0o600)
	if r = run(t, "bundle", "build", "-f", spec, "-o", out); r.code != ExitInvalidConfig || !strings.Contains(r.errOut, `spec.components[0].fiel (line 6): unknown field; did you mean "file"?`) {
		t.Errorf("bad bundle.yaml: exit %d %s", r.code, r.errOut)
	}
}
