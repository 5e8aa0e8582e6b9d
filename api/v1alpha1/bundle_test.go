package v1alpha1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBundleValidation(t *testing.T) {
	const head = "apiVersion: privcloud.io/v1alpha1\nkind: Bundle\nmetadata: {name: lab}\nspec:\n"
	cases := []struct{ name, spec, path, msg string }{
		{"two sources", "  components:\n  - {name: etcd, version: v1, file: a, url: 'http://x/y', sha256: " + strings.Repeat("a", 64) + "}\n", "spec.components[0]", "exactly one source"},
		{"no source", "  components:\n  - {name: etcd, version: v1}\n", "spec.components[0]", "exactly one source"},
		{"url without pin", "  components:\n  - {name: etcd, version: v1, url: 'http://x/y'}\n", "spec.components[0].sha256", "pinned sha256"},
		{"image from an image", "  components:\n  - {name: a, version: '1', image: {ref: 'r/a:1', pull: 'r/a:1'}}\n  - {name: b, version: '1', image: {ref: 'r/b:1', fromBinary: [a]}}\n", "spec.components[1].image.fromBinary[0]", "not a binary component"},
		{"bad platform", "  platform: linux\n  components:\n  - {name: a, version: '1', file: x}\n", "spec.platform", "os/arch"},
		{"duplicate", "  components:\n  - {name: a, version: '1', file: x}\n  - {name: a, version: '1', file: y}\n", "spec.components[1].name", "listed twice"},
		{"go version", "  components:\n  - {name: a, version: '1', go: {module: m, version: latest}}\n", "spec.components[0].go.version", "module version"},
		{"unknown role", "  components:\n  - {name: a, version: '1', file: x, roles: [master]}\n", "spec.components[0].roles[0]", "unknown role"},
		{"wrong kind", "", "kind", "not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := head + tc.spec
			if tc.name == "wrong kind" {
				doc = strings.Replace(head, "kind: Bundle", "kind: Cluster", 1) + "  components: []\n"
			}
			p := filepath.Join(t.TempDir(), "bundle.yaml")
			os.WriteFile(p, []byte(doc), 0o600)
			_, err := LoadBundle(p)
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("want a ValidationError, got %v", err)
			}
			for _, fe := range ve.Errors {
				if fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no %q at %s in:\n%v", tc.msg, tc.path, ve)
		})
	}
}
