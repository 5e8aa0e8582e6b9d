package v1alpha1

import "testing"

// The lab's bundle descriptions are what `make lab` and the e2e suite build: they must load and validate.
func TestLabBundleDescriptionsLoad(t *testing.T) {
	for _, f := range []string{"../../e2e/lab/bundle.yaml", "../../e2e/lab/upgrade-bundle.yaml"} {
		b, err := LoadBundle(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, c := range b.Spec.Components {
			if f == "../../e2e/lab/bundle.yaml" && c.Version == "v1.36.3" {
				t.Errorf("%s: %s %s belongs in upgrade-bundle.yaml: make lab would build it", f, c.Name, c.Version)
			}
		}
	}
}
