package addons

import (
	"encoding/base64"
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/golden"
	"github.com/privcloud/privcloud/pki"
)

const clusterYAML = `apiVersion: privcloud.io/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  kubernetesVersion: v1.37.1
  hosts:
  - {name: cp1, address: 10.77.0.11, roles: [control-plane, etcd]}
  - {name: w1, address: 10.77.0.12, roles: [worker]}
  containerd:
    kata: {enabled: true}
  addons:
    coredns: {upstreams: [10.77.0.53, "10.77.0.54:5353"]}
    multus:
      networks:
      - {name: lab-macvlan, type: macvlan, master: host0, ipam: static, addresses: [10.78.0.10/24, 10.78.0.11/24]}
      - {name: storage, namespace: storage, type: bridge, ipam: host-local, subnet: 10.79.0.0/24}
    quay: {enabled: true, hostname: registry.lab.example}
    monitoring: {enabled: true}
`

func cluster(t *testing.T, patch func(*api.Cluster)) *api.Cluster {
	t.Helper()
	c, err := api.LoadBytes([]byte(clusterYAML), "cluster.yaml", "/etc/privcloud", "/root")
	if err != nil {
		t.Fatal(err)
	}
	if patch != nil {
		patch(c)
	}
	return c
}

var images = map[string]string{
	"coredns": "registry.k8s.io/coredns/coredns:v1.14.7", "multus": "ghcr.io/k8snetworkplumbingwg/multus-cni:v4.2.4",
	"quay": "quay.io/projectquay/quay:v3.12.0", "postgresql": "docker.io/library/postgres:15", "redis": "docker.io/library/redis:7",
	"prometheus-operator": "quay.io/prometheus-operator/prometheus-operator:v0.93.1", "prometheus-config-reloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
	"prometheus": "quay.io/prometheus/prometheus:v3.16.0", "alertmanager": "quay.io/prometheus/alertmanager:v0.31.1",
	"node-exporter": "quay.io/prometheus/node-exporter:v1.12.1", "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
}

func inputs(c *api.Cluster) *Inputs {
	return &Inputs{Cluster: c, Images: images, Upstreams: c.Spec.Addons.CoreDNS.Upstreams, Quay: &QuayState{
		Secrets: QuaySecrets{DatabasePassword: "db-password", RedisPassword: "redis-password", SecretKey: "secret-key", DatabaseSecretKey: "db-secret-key"},
		TLSCert: []byte("-----BEGIN CERTIFICATE-----\n"), TLSKey: []byte("-----BEGIN EC PRIVATE KEY-----\n"),
		CACert: []byte("-----BEGIN CERTIFICATE-----\n"), Node: "w1"},
		Versions: map[string]string{"prometheus": "v3.16.0"},
		Monitoring: &MonitoringState{CACert: []byte("-----BEGIN CERTIFICATE-----\n"), ClientCert: []byte("-----BEGIN CERTIFICATE-----\n"),
			ClientKey: []byte("-----BEGIN EC PRIVATE KEY-----\n")}}
}

// rendered is the add-on's objects as YAML documents, in apply order.
func rendered(t *testing.T, name string, in *Inputs) string {
	t.Helper()
	a, ok := Find(name)
	if !ok {
		t.Fatalf("no add-on %s", name)
	}
	objs, err := a.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			o = readable(t, o)
		}
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return strings.Join(docs, "---\n")
}

// readable shows a Secret's data decoded, so the golden file can be reviewed.
func readable(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	o = o.DeepCopy()
	data, _, _ := unstructured.NestedStringMap(o.Object, "data")
	for k, v := range data {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("Secret %s: data %s is not base64: %v", o.GetName(), k, err)
		}
		data[k] = "(decoded) " + string(b)
	}
	unstructured.SetNestedStringMap(o.Object, data, "data")
	return o
}

func TestCoreDNS(t *testing.T) { golden.Assert(t, rendered(t, "coredns", inputs(cluster(t, nil)))) }

func TestCoreDNSWithoutUpstreams(t *testing.T) {
	in := inputs(cluster(t, nil))
	in.Upstreams = nil
	out := rendered(t, "coredns", in)
	if strings.Contains(out, "forward .") || !strings.Contains(out, "names outside cluster.local are not forwarded") {
		t.Errorf("without upstreams the Corefile must not forward:\n%s", out)
	}
}

func TestKata(t *testing.T)   { golden.Assert(t, rendered(t, "kata", inputs(cluster(t, nil)))) }
func TestMultus(t *testing.T) { golden.Assert(t, rendered(t, "multus", inputs(cluster(t, nil)))) }
func TestQuayHostPath(t *testing.T) {
	golden.Assert(t, rendered(t, "quay", inputs(cluster(t, nil))))
}

func TestQuayStorageClass(t *testing.T) {
	golden.Assert(t, rendered(t, "quay", inputs(cluster(t, func(c *api.Cluster) { c.Spec.Addons.Quay.StorageClass = "fast" }))))
}

// The manifests go through the API server's validation in the e2e suite; here: every namespaced kind has
// its namespace, and the apply order puts what others need first.
func TestApplyOrder(t *testing.T) {
	for _, a := range All() {
		objs, err := a.Render(inputs(cluster(t, nil)))
		if err != nil {
			t.Fatal(err)
		}
		crds, err := a.CRDs()
		if err != nil {
			t.Fatal(err)
		}
		defined := map[string]bool{}
		for _, crd := range crds {
			kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
			defined[kind] = true
		}
		seen := map[string]bool{}
		for _, o := range objs {
			if clusterScoped[o.GetKind()] == (o.GetNamespace() != "") {
				t.Errorf("%s: %s has namespace %q", a.Name, o.GetKind(), o.GetNamespace())
			}
			// a kind an add-on defines is applied once its CRD is established: the CRD goes in CRDs()
			if o.GetKind() == "CustomResourceDefinition" {
				t.Errorf("%s: CRD %s is among the objects, not its CRDs", a.Name, o.GetName())
			}
			if o.GetKind() == "NetworkAttachmentDefinition" && !defined[o.GetKind()] {
				t.Errorf("%s: a NetworkAttachmentDefinition without its CRD in the add-on's CRDs", a.Name)
			}
			if o.GetNamespace() == pki.QuayNamespace && !seen["Namespace"] {
				t.Errorf("%s: %s comes before its namespace", a.Name, o.GetKind())
			}
			seen[o.GetKind()] = true
		}
	}
}

func TestMonitoring(t *testing.T) {
	golden.Assert(t, rendered(t, "monitoring", inputs(cluster(t, nil))))
}

func TestMonitoringStorageClass(t *testing.T) {
	out := rendered(t, "monitoring", inputs(cluster(t, func(c *api.Cluster) {
		c.Spec.Addons.Monitoring.StorageClass, c.Spec.Addons.Monitoring.StorageSize, c.Spec.Addons.Monitoring.Retention = "fast", "50Gi", "30d"
	})))
	for _, want := range []string{"storageClassName: fast", "storage: 50Gi", "retention: 30d"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(rendered(t, "monitoring", inputs(cluster(t, nil))), "volumeClaimTemplate") {
		t.Error("without a storageClass Prometheus must keep its default emptyDir")
	}
}

// TestScrapeJobs: every component on every host that runs it, once; an etcd-only host has etcd and its
// certificates, nothing of a node.
func TestScrapeJobs(t *testing.T) {
	c := cluster(t, func(c *api.Cluster) {
		c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "e1", Address: "10.77.0.13", InternalAddress: "10.77.0.13", Roles: []api.Role{api.RoleEtcd}})
	})
	var got []string
	for _, j := range ScrapeJobs(&c.Spec) {
		var targets []string
		for _, tg := range j.Targets {
			targets = append(targets, tg.Instance+"="+tg.Address)
		}
		got = append(got, j.Name+" "+j.Path+" "+strings.Join(targets, ","))
	}
	want := []string{
		"api-lb /metrics/api-lb cp1=10.77.0.11:10290,w1=10.77.0.12:10290",
		"apiserver /metrics cp1=10.77.0.11:6443",
		"cadvisor /metrics/cadvisor cp1=10.77.0.11:10250,w1=10.77.0.12:10250",
		"certificates /metrics/certificates cp1=10.77.0.11:10290,w1=10.77.0.12:10290,e1=10.77.0.13:10290",
		"etcd /metrics/etcd cp1=10.77.0.11:10290,e1=10.77.0.13:10290",
		"kube-controller-manager /metrics/kube-controller-manager cp1=10.77.0.11:10290",
		"kube-proxy /metrics/kube-proxy cp1=10.77.0.11:10290,w1=10.77.0.12:10290",
		"kube-scheduler /metrics/kube-scheduler cp1=10.77.0.11:10290",
		"kubelet /metrics cp1=10.77.0.11:10250,w1=10.77.0.12:10250",
		"node-exporter /metrics/node-exporter cp1=10.77.0.11:10290,w1=10.77.0.12:10290",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ScrapeJobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestOperatorCRDs: the embedded CRDs decode, and each fits in one etcd object with room for its status.
func TestOperatorCRDs(t *testing.T) {
	crds, err := OperatorCRDs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, crd := range crds {
		b, _ := crd.MarshalJSON()
		if crd.GetKind() != "CustomResourceDefinition" || len(b) > 1<<20 {
			t.Errorf("%s %s: %d bytes", crd.GetKind(), crd.GetName(), len(b))
		}
		names = append(names, crd.GetName())
	}
	for _, want := range []string{"prometheuses.monitoring.coreos.com", "alertmanagers.monitoring.coreos.com", "scrapeconfigs.monitoring.coreos.com",
		"servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com", "alertmanagerconfigs.monitoring.coreos.com"} {
		if !slices.Contains(names, want) {
			t.Errorf("no CRD %s among %v", want, names)
		}
	}
}

// TestEveryAddonRendersFromTheBundleAlone: what needs only the objects' kinds and names (privcloud addons
// status, privcloud status) renders each add-on from cluster.yaml and the bundle, without privcloud's state.
func TestEveryAddonRendersFromTheBundleAlone(t *testing.T) {
	m := &bundle.Manifest{}
	for name, ref := range images {
		m.Components = append(m.Components, bundle.Component{Name: name, Version: "v1", Kind: "image", ImageRef: ref})
	}
	for _, a := range All() {
		if _, err := a.Render(a.NewInputs(cluster(t, nil), m)); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
	}
}

var clusterScoped = map[string]bool{"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "RuntimeClass": true}

func TestNetworkConfig(t *testing.T) {
	for _, tc := range []struct {
		n    api.ExtraNetwork
		want string
	}{
		{api.ExtraNetwork{Name: "a", Type: "macvlan", Master: "eth1", IPAM: "host-local", Subnet: "10.1.0.0/24"},
			`{"cniVersion":"1.0.0","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}]],"type":"host-local"},"master":"eth1","mode":"bridge","name":"a","type":"macvlan"}`},
		{api.ExtraNetwork{Name: "a-very-long-name", Type: "bridge", IPAM: "static", Addresses: []string{"10.1.0.5/24"}},
			`{"bridge":"br-a-very-long-","capabilities":{"ips":true},"cniVersion":"1.0.0","ipam":{"type":"static"},"name":"a-very-long-name","type":"bridge"}`},
	} {
		got, err := NetworkConfig(tc.n)
		if err != nil || got != tc.want {
			t.Errorf("NetworkConfig(%+v) = %s, %v; want %s", tc.n, got, err, tc.want)
		}
	}
}

func TestMissingImages(t *testing.T) {
	m := &bundle.Manifest{Components: []bundle.Component{
		{Name: "quay", Version: "3.12", Kind: "absent", ImageRef: "quay.io/projectquay/quay:v3.12.0", Absent: "a Python application"},
		{Name: "postgresql", Version: "15", Kind: "image", ImageRef: "docker.io/library/postgres:15"},
		{Name: "coredns", Version: "v1.14.7", Kind: "image", ImageRef: "registry.k8s.io/coredns/coredns:v1.14.7"},
	}}
	spec := &cluster(t, nil).Spec
	quay, _ := Find("quay")
	got := quay.MissingImages(spec, m)
	want := []string{`the bundle records quay 3.12 (quay.io/projectquay/quay:v3.12.0) as absent: a Python application`, `the bundle has no component "redis"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("MissingImages = %q, want %q", got, want)
	}
	coredns, _ := Find("coredns")
	if got := coredns.MissingImages(spec, m); len(got) != 0 {
		t.Errorf("coredns is in the bundle, yet: %q", got)
	}
	if refs := ImageRefs(m); refs["quay"] != "" || refs["postgresql"] != "docker.io/library/postgres:15" {
		t.Errorf("ImageRefs = %v: an absent image has no reference, a present one has", refs)
	}
}

func TestQuaySecretsAreMadeOnce(t *testing.T) {
	path := t.TempDir() + "/addons/quay-secrets.json"
	first, err := LoadOrCreateQuaySecrets(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateQuaySecrets(path)
	if err != nil || again != first || len(first.DatabasePassword) != 48 || first.DatabasePassword == first.RedisPassword {
		t.Errorf("secrets %+v then %+v (%v): made once, random, distinct", first, again, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// An image is left off the nodes only when every add-on that runs it is off; images no add-on names stay.
func TestUnusedImages(t *testing.T) {
	on, off := true, false
	spec := &api.ClusterSpec{}
	spec.Addons.CoreDNS.Enabled = &off
	spec.Addons.Multus.Enabled = &on
	spec.Addons.Monitoring.Enabled = off
	spec.Addons.Quay.Enabled = on
	unused := UnusedImages(spec)
	for _, name := range append([]string{"coredns"}, MonitoringImages...) {
		if !unused[name] {
			t.Errorf("%s runs only in add-ons that are off: it should be unused", name)
		}
	}
	for _, name := range append([]string{"pause", "test"}, QuayImages...) {
		if unused[name] {
			t.Errorf("%s is used (an enabled add-on runs it, or no add-on names it)", name)
		}
	}
	spec.Addons.Monitoring.Enabled = on
	if unused := UnusedImages(spec); unused["prometheus"] || !unused["coredns"] {
		t.Errorf("monitoring on: %v", unused)
	}
}

// Pruning finds an add-on's objects of its pruned kinds by its selector: each one it renders must match it, or
// a network taken out of cluster.yaml would stay; no other add-on's object of those kinds may, or it would be
// deleted as stale.
func TestPruneSelectorsFindExactlyTheAddonsObjects(t *testing.T) {
	in := inputs(cluster(t, nil))
	pruners := 0
	for _, a := range All() {
		if len(a.Prune) == 0 {
			continue
		}
		pruners++
		sel, err := labels.Parse(a.PruneSelector)
		if err != nil || sel.Empty() {
			t.Fatalf("%s: selector %q: %v", a.Name, a.PruneSelector, err)
		}
		for _, b := range All() {
			objs, err := b.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			matched := 0
			for _, o := range objs {
				if !slices.Contains(a.Prune, o.GroupVersionKind()) {
					continue
				}
				switch match := sel.Matches(labels.Set(o.GetLabels())); {
				case b.Name == a.Name && !match:
					t.Errorf("%s: %s does not match its own prune selector %q", a.Name, o.GetName(), a.PruneSelector)
				case b.Name != a.Name && match:
					t.Errorf("%s's prune selector %q matches %s's %s", a.Name, a.PruneSelector, b.Name, o.GetName())
				case match:
					matched++
				}
			}
			if b.Name == a.Name && matched == 0 {
				t.Errorf("%s renders nothing of the kinds it prunes %v", a.Name, a.Prune)
			}
		}
	}
	if pruners != 2 {
		t.Errorf("%d add-ons prune, want multus and monitoring", pruners)
	}
}
