// Package bundles holds the bundle descriptions users build from; its tests keep them valid and in step with
// the lab's, which the e2e suite proves.
package bundles

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// labOnly are the lab bundle's components for the e2e tests alone.
var labOnly = []string{"busybox", "probe", "test"}

// upstream are the images a production bundle pulls: the lab records them as absent.
var upstream = []string{"quay", "postgresql", "redis"}

func TestProductionFollowsTheLab(t *testing.T) {
	prod, err := api.LoadBundle("production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lab, err := api.LoadBundle("../e2e/lab/bundle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.Component{}
	for _, c := range prod.Spec.Components {
		byName[c.Name] = c
	}
	for _, c := range lab.Spec.Components {
		p, ok := byName[c.Name]
		switch {
		case slices.Contains(labOnly, c.Name):
			if ok {
				t.Errorf("%s is for the e2e tests only: the production bundle must not carry it", c.Name)
			}
		case slices.Contains(upstream, c.Name):
			if !ok || p.Image == nil || p.Image.Pull == "" || p.Absent != "" {
				t.Errorf("%s must be pulled in the production bundle: %+v", c.Name, p)
			}
		case !ok:
			t.Errorf("the production bundle lacks the lab's %s %s", c.Name, c.Version)
		default:
			// same version from the same source (local replaces resolve to the same folder from either file)
			want, _ := json.Marshal(c)
			got, _ := json.Marshal(p)
			if string(got) != string(want) {
				t.Errorf("%s differs from the lab's:\n got %s\nwant %s", c.Name, got, want)
			}
		}
		delete(byName, c.Name)
	}
	for name := range byName {
		t.Errorf("the production bundle has %s, which the lab bundle (and so the e2e suite) does not", name)
	}
}

func TestProductionPullsArePinned(t *testing.T) {
	prod, err := api.LoadBundle("production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range prod.Spec.Components {
		if c.Image == nil || c.Image.Pull == "" {
			continue
		}
		// Quay's digest is written by the first build with --pin (make production-bundle)
		if c.Name != "quay" && !strings.Contains(c.Image.Pull, "@sha256:") {
			t.Errorf("%s is pulled by tag (%s): pin it by digest", c.Name, c.Image.Pull)
		}
	}
}
