package upgrade

import (
	"reflect"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
)

func lab(version string) *api.Cluster {
	return &api.Cluster{Metadata: api.ObjectMeta{Name: "lab"}, Spec: api.ClusterSpec{KubernetesVersion: version, Hosts: []api.Host{
		{Name: "h1", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "h2", Roles: []api.Role{api.RoleWorker}},
		{Name: "h3", Roles: []api.Role{api.RoleWorker}},
	}}}
}

func manifest(k8s ...string) *bundle.Manifest {
	m := &bundle.Manifest{Components: []bundle.Component{
		{Name: "etcd", Version: "v3.7.0", Kind: "binary"}, {Name: "etcdctl", Version: "v3.7.0", Kind: "binary"},
		{Name: "etcdutl", Version: "v3.7.0", Kind: "binary"},
	}}
	for _, v := range k8s {
		for _, c := range append(append([]string{}, ControlPlaneComponents...), NodeComponents...) {
			bc := bundle.Component{Name: c, Version: v, Kind: "binary"}
			if c == "kubectl" {
				bc.Roles = []string{"control-plane"} // as in the lab bundle: workers have none
			}
			m.Components = append(m.Components, bc)
		}
	}
	return m
}

func running(k8s, etcd string) map[string]Installed {
	cp := Installed{"etcd": etcd, "etcdctl": etcd, "etcdutl": etcd}
	node := Installed{}
	for _, c := range ControlPlaneComponents {
		cp[c] = k8s
	}
	for _, c := range NodeComponents {
		cp[c], node[c] = k8s, k8s
	}
	delete(node, "kubectl")
	return map[string]Installed{"h1": cp, "h2": node, "h3": node}
}

func TestPlanOneMinorUp(t *testing.T) {
	p := Make(lab("v1.37.1"), running("v1.36.3", "v3.7.0"), manifest("v1.36.3", "v1.37.1"), 10)
	if len(p.Refusals) != 0 || p.From != "v1.36.3" || p.To != "v1.37.1" || p.UpToDate() {
		t.Fatalf("plan %+v", p)
	}
	if got := p.Hosts[0].Changes; len(got) != 6 || got[0] != (Change{"kube-apiserver", "v1.36.3", "v1.37.1"}) {
		t.Errorf("h1 changes %+v: the control-plane components first, then the node's; etcd is already current", got)
	}
	if got := p.Hosts[1].Changes; len(got) != 2 || got[0].Component != "kubelet" || got[1].Component != "kube-proxy" {
		t.Errorf("h2 changes %+v: kubelet and kube-proxy, and no kubectl, which workers do not get", got)
	}
	// the control plane alone first, then workers in batches of 10% (at least one)
	if want := [][]string{{"h1"}, {"h2"}, {"h3"}}; !reflect.DeepEqual(p.Batches, want) {
		t.Errorf("batches %v, want %v", p.Batches, want)
	}
	if p := Make(lab("v1.37.1"), running("v1.36.3", "v3.7.0"), manifest("v1.36.3", "v1.37.1"), 100); !reflect.DeepEqual(p.Batches, [][]string{{"h1"}, {"h2", "h3"}}) {
		t.Errorf("batches of 100%%: %v", p.Batches)
	}
}

func TestPlanUpToDate(t *testing.T) {
	p := Make(lab("v1.37.1"), running("v1.37.1", "v3.7.0"), manifest("v1.37.1"), 10)
	if !p.UpToDate() || len(p.Batches) != 0 || len(p.Refusals) != 0 {
		t.Errorf("a converged cluster plans nothing: %+v", p)
	}
}

func TestPlanRefusals(t *testing.T) {
	for _, tc := range []struct {
		name      string
		target    string
		installed map[string]Installed
		m         *bundle.Manifest
		want      string
	}{
		{"minor skipped", "v1.37.1", running("v1.35.2", "v3.7.0"), manifest("v1.37.1"), "v1.35.2 to v1.37.1 skips a minor version: upgrade to v1.36 first"},
		{"downgrade", "v1.36.3", running("v1.37.1", "v3.7.0"), manifest("v1.36.3"), "downgrades are not supported"},
		{"missing from the bundle", "v1.37.2", running("v1.37.1", "v3.7.0"), manifest("v1.37.1"), "the bundle has no kube-apiserver v1.37.2, which h1 needs"},
		{"etcd minor skipped", "v1.37.1", running("v1.36.3", "v3.5.21"), manifest("v1.37.1"), "etcd v3.5.21 to v3.7.0 skips a minor version"},
		{"no control plane running", "v1.37.1", map[string]Installed{}, manifest("v1.37.1"), "h1 runs no kube-apiserver privcloud installed"},
		{"a worker not joined", "v1.37.1", func() map[string]Installed { in := running("v1.36.3", "v3.7.0"); delete(in, "h3"); return in }(),
			manifest("v1.37.1"), "h3 runs no kubelet privcloud installed: bring it up with 'privcloud join' first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Make(lab(tc.target), tc.installed, tc.m, 10)
			if !strings.Contains(strings.Join(p.Refusals, "\n"), tc.want) {
				t.Errorf("refusals %q, want one saying %q", p.Refusals, tc.want)
			}
		})
	}
	// a kubelet newer than every API server breaks the skew policy
	in := running("v1.36.3", "v3.7.0")
	in["h3"] = Installed{"kubelet": "v1.37.1", "kube-proxy": "v1.37.1"}
	p := Make(lab("v1.37.1"), in, manifest("v1.36.3", "v1.37.1"), 10)
	if !strings.Contains(strings.Join(p.Refusals, "\n"), "the kubelet on h3 (v1.37.1) is newer than the API server (v1.36.3)") {
		t.Errorf("refusals %q", p.Refusals)
	}
}
