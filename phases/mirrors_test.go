package phases

import (
	"reflect"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/templates"
)

func TestRegistryMirrors(t *testing.T) {
	var s api.ClusterSpec
	if got := registryMirrors(s); len(got) != 0 {
		t.Errorf("no mirrors declared, yet entries: %v", got)
	}
	s.Containerd.RegistryMirrors = []api.RegistryMirror{
		{Registry: "docker.io", Endpoints: []string{"https://m1.example", "http://10.0.0.5:5000"}},
		{Registry: "registry.lab.example", Endpoints: []string{"https://m2.example"}},
	}
	s.Addons.Quay = api.Quay{Enabled: true, Hostname: "registry.lab.example"}
	got := registryMirrors(s)
	want := map[string]templates.RegistryHosts{
		"docker.io":            {Server: "https://registry-1.docker.io", Hosts: []templates.RegistryHost{{URL: "https://m1.example"}, {URL: "http://10.0.0.5:5000"}}},
		"registry.lab.example": {Server: "https://registry.lab.example", Hosts: []templates.RegistryHost{{URL: "https://m2.example"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("quay not used as mirror:\n got %+v\nwant %+v", got, want)
	}

	// Quay as the cluster's registry comes first, through each node's own NodePort, trusting the cluster CA
	s.Addons.Quay.UseAsMirror = true
	got = registryMirrors(s)
	want["registry.lab.example"] = templates.RegistryHosts{Server: "https://registry.lab.example", Hosts: []templates.RegistryHost{
		{URL: "https://127.0.0.1:30443", CA: "/etc/kubernetes/pki/ca.crt"}, {URL: "https://m2.example"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("quay as mirror:\n got %+v\nwant %+v", got, want)
	}
}

// 'addons apply' writes the nodes' mirrors too: Quay turned on as the cluster's registry after init is pulled
// through on every node without another init.
func TestAddonsApplyWritesQuayMirror(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Addons.Quay = api.Quay{Enabled: true, Hostname: "registry.lab.example", UseAsMirror: true}
	assertOrder(t, Addons(&AddonOptions{}), "connect", "images", "mirrors", "addons/quay")
	wf := workflow.Workflow{Name: "addons apply", Phases: []workflow.Phase{connect(), addonMirrors(&AddonOptions{})}}
	if err := runPhases(t, wf, c, ex, out, "mirrors"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		b, _, ok := f.File(registryHostsDir + "/registry.lab.example/hosts.toml")
		if !ok || !strings.Contains(string(b), "https://127.0.0.1:30443") {
			t.Errorf("%s: no Quay mirror:\n%s", name, b)
		}
	}
}
