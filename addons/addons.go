// Package addons renders the cluster add-ons (CoreDNS, the Kata RuntimeClass, Multus, Quay, monitoring) from embedded
// manifest templates into objects for server-side apply. What they run comes from the bundle only.
package addons

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/kube"
)

//go:embed manifests/*.yaml
var files embed.FS

var manifests = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"join": strings.Join,
	// quote makes a YAML double-quoted scalar (JSON's string syntax is a subset of it)
	"quote": func(s string) (string, error) { b, err := json.Marshal(s); return string(b), err },
	"b64": func(v any) string {
		switch v := v.(type) {
		case []byte:
			return base64.StdEncoding.EncodeToString(v)
		default:
			return base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(v)))
		}
	},
	"list": func(v ...any) []any { return v },
}).ParseFS(files, "manifests/*.yaml"))

// Addon is one add-on: its phase name, the bundle images it runs and how its objects are made.
type Addon struct {
	Name  string
	Short string
	// Images names the bundle components whose images the add-on's pods run.
	Images func(*api.ClusterSpec) []string
	// Disabled says why cluster.yaml leaves the add-on out ("" when it is enabled).
	Disabled func(*api.ClusterSpec) string
	data     func(*Inputs) (any, error)
	// crds are the CustomResourceDefinitions the add-on's objects need, applied and established first.
	crds func() ([]*unstructured.Unstructured, error)
	// Prune names kinds whose objects matching PruneSelector only this add-on makes, as many as cluster.yaml
	// asks for: after an apply, those it did not render (taken out of cluster.yaml) are deleted, which
	// server-side apply alone would leave in place.
	Prune         []schema.GroupVersionKind
	PruneSelector string
}

// Inputs is what the manifests are made from besides cluster.yaml.
type Inputs struct {
	Cluster *api.Cluster
	// Images maps bundle component names to their image references.
	Images map[string]string
	// Upstreams are CoreDNS's resolvers for names outside the cluster; empty forwards nothing.
	Upstreams []string
	// Versions maps bundle component names to their versions.
	Versions map[string]string
	// Quay is what the Quay add-on needs from privcloud's state (nil when it is not rendered).
	Quay *QuayState
	// Monitoring is what the monitoring add-on needs from privcloud's PKI (nil when it is not rendered).
	Monitoring *MonitoringState
}

// All lists the add-ons in the order init applies them: cluster DNS first, as every other workload may
// need it; Multus before workloads that attach extra networks.
func All() []Addon {
	return []Addon{
		{Name: "coredns", Short: "Cluster DNS (CoreDNS) at the clusterDNS address",
			Images: func(*api.ClusterSpec) []string { return []string{"coredns"} },
			Disabled: func(s *api.ClusterSpec) string {
				return disabled(s.Addons.CoreDNS.Enabled, "spec.addons.coredns.enabled")
			},
			data: corednsData},
		{Name: "kata", Short: "The kata RuntimeClass (handler and pod overhead)",
			Images: func(*api.ClusterSpec) []string { return nil },
			Disabled: func(s *api.ClusterSpec) string {
				return disabled(&s.Containerd.Kata.Enabled, "spec.containerd.kata.enabled")
			},
			data: func(in *Inputs) (any, error) {
				k := in.Cluster.Spec.Containerd.Kata
				return map[string]string{"Name": k.RuntimeClassName, "Handler": k.Handler, "OverheadCPU": k.OverheadCPU, "OverheadMemory": k.OverheadMemory}, nil
			}},
		{Name: "multus", Short: "Multus's NetworkAttachmentDefinition kind and the extra networks of cluster.yaml (its plugin is on every node)",
			Images: func(*api.ClusterSpec) []string { return nil }, // its plugin is a binary on the nodes
			Disabled: func(s *api.ClusterSpec) string {
				return disabled(s.Addons.Multus.Enabled, "spec.addons.multus.enabled")
			},
			data: multusData, crds: MultusCRDs,
			// one per network of cluster.yaml
			Prune:         []schema.GroupVersionKind{{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"}},
			PruneSelector: "app.kubernetes.io/managed-by=privcloud"},
		{Name: "quay", Short: "The Quay registry with PostgreSQL and Redis",
			Images:   func(*api.ClusterSpec) []string { return QuayImages },
			Disabled: func(s *api.ClusterSpec) string { return disabled(&s.Addons.Quay.Enabled, "spec.addons.quay.enabled") },
			data:     quayData},
		{Name: "monitoring", Short: "Prometheus, Alertmanager, node-exporter and kube-state-metrics, run by the Prometheus Operator",
			Images: func(*api.ClusterSpec) []string { return MonitoringImages },
			Disabled: func(s *api.ClusterSpec) string {
				return disabled(&s.Addons.Monitoring.Enabled, "spec.addons.monitoring.enabled")
			},
			data: monitoringData, crds: OperatorCRDs,
			// one per component the hosts of cluster.yaml run, and CoreDNS's while it is on
			Prune: []schema.GroupVersionKind{{Group: "monitoring.coreos.com", Version: "v1alpha1", Kind: "ScrapeConfig"},
				{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}},
			PruneSelector: "app.kubernetes.io/part-of=privcloud-monitoring"},
	}
}

// Find returns the add-on called name.
func Find(name string) (Addon, bool) {
	for _, a := range All() {
		if a.Name == name {
			return a, true
		}
	}
	return Addon{}, false
}

func disabled(enabled *bool, field string) string {
	if enabled != nil && *enabled {
		return ""
	}
	return field + " is false in cluster.yaml"
}

// MissingImages explains each image of the add-on that the bundle does not carry, with the reason the bundle
// records (an absent component says why it could not be built).
func (a Addon) MissingImages(spec *api.ClusterSpec, m *bundle.Manifest) []string {
	var out []string
	for _, name := range a.Images(spec) {
		c := m.Find(name, "")
		switch {
		case c == nil:
			out = append(out, fmt.Sprintf("the bundle has no component %q", name))
		case c.Kind == "absent":
			out = append(out, fmt.Sprintf("the bundle records %s %s (%s) as absent: %s", c.Name, c.Version, c.ImageRef, c.Absent))
		case c.ImageRef == "":
			out = append(out, fmt.Sprintf("the bundle's %s is not an image", c.Name))
		}
	}
	return out
}

// UnusedImages names the bundle's image components that only add-ons cluster.yaml leaves off run: nodes need
// not hold them until an add-on that runs them is turned on. Images no add-on names (the sandbox image, the
// operator's own) are always used.
func UnusedImages(spec *api.ClusterSpec) map[string]bool {
	unused := map[string]bool{}
	for _, a := range All() {
		if a.Disabled(spec) != "" {
			for _, name := range a.Images(spec) {
				unused[name] = true
			}
		}
	}
	for _, a := range All() {
		if a.Disabled(spec) == "" {
			for _, name := range a.Images(spec) {
				delete(unused, name)
			}
		}
	}
	return unused
}

// ImageRefs maps every image component of the bundle to its reference.
func ImageRefs(m *bundle.Manifest) map[string]string {
	out := map[string]string{}
	for _, c := range m.Components {
		if c.ImageRef != "" && c.Kind != "absent" {
			out[c.Name] = c.ImageRef
		}
	}
	return out
}

// NewInputs are the inputs of the add-on from cluster.yaml and the bundle. An image the bundle lacks gets a
// reference that cannot be pulled (missing.invalid/NAME), so the manifests can still be rendered and checked
// by the API server before the add-on fails on MissingImages.
func (a Addon) NewInputs(c *api.Cluster, m *bundle.Manifest) *Inputs {
	// Quay's and monitoring's states stand empty until the caller reads them from privcloud's state: what
	// only needs the objects' kinds and names (add-on status) renders without them
	in := &Inputs{Cluster: c, Images: ImageRefs(m), Versions: map[string]string{}, Quay: &QuayState{}, Monitoring: &MonitoringState{}}
	for _, comp := range m.Components {
		in.Versions[comp.Name] = comp.Version
	}
	for _, img := range a.Images(&c.Spec) {
		if _, ok := in.Images[img]; !ok {
			in.Images[img] = "missing.invalid/" + img
		}
	}
	return in
}

// CRDs are the CustomResourceDefinitions the add-on brings, which must be established before its other
// objects are applied.
func (a Addon) CRDs() ([]*unstructured.Unstructured, error) {
	if a.crds == nil {
		return nil, nil
	}
	return a.crds()
}

// Render makes the add-on's objects, in the order they are applied.
func (a Addon) Render(in *Inputs) ([]*unstructured.Unstructured, error) {
	data, err := a.data(in)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := manifests.ExecuteTemplate(&b, a.Name+".yaml", data); err != nil {
		return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
	}
	objs, err := kube.Decode(a.Name+".yaml", b.Bytes())
	if err != nil {
		return nil, err
	}
	kube.SortForApply(objs)
	return objs, nil
}

// image is the reference of a bundle image, or an error naming the component.
func (in *Inputs) image(component string) (string, error) {
	if ref, ok := in.Images[component]; ok {
		return ref, nil
	}
	return "", fmt.Errorf("the bundle has no image %q", component)
}

func corednsData(in *Inputs) (any, error) {
	img, err := in.image("coredns")
	if err != nil {
		return nil, err
	}
	s := &in.Cluster.Spec
	return map[string]any{"Image": img, "Replicas": s.Addons.CoreDNS.Replicas, "DNSDomain": s.Network.DNSDomain,
		"ClusterDNS": s.Network.ClusterDNS, "Upstreams": in.Upstreams}, nil
}

func sha256Hex(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
