// Package upgrade decides what an upgrade to spec.kubernetesVersion does: which version of each component
// every host runs and will run, in which order the hosts go, and what the Kubernetes version-skew policy,
// etcd's upgrade rules and the bundle's content refuse. It reads nothing itself: the versions installed on
// the hosts and the bundle's manifest are its inputs.
package upgrade

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/exitclass"
)

// Components are the binaries an upgrade replaces, per role, in the order a host's upgrade takes them.
var (
	ControlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	NodeComponents         = []string{"kubelet", "kube-proxy", "kubectl"}
	EtcdComponents         = []string{"etcd", "etcdctl", "etcdutl"}
)

// Installed is what a host runs: component name → version (from the active link of each binary).
type Installed map[string]string

// Change is one component of one host moving from one version to another.
type Change struct {
	Component string `json:"component"`
	From      string `json:"from"`
	To        string `json:"to"`
}

// HostPlan is one host's part of the plan.
type HostPlan struct {
	Host    string   `json:"host"`
	Roles   []string `json:"roles"`
	Changes []Change `json:"changes"`
}

// Plan is the whole upgrade: the hosts in the order they go, batches of hosts that go together, and the
// refusals that stop it before anything changes.
type Plan struct {
	From     string     `json:"from"`
	To       string     `json:"to"`
	Hosts    []HostPlan `json:"hosts"`
	Batches  [][]string `json:"batches"`
	Refusals []string   `json:"refusals,omitempty"`
	// BundleFrom names the bundle the cluster last ran (recorded in the state directory) and BundleChanges
	// what the bundle of cluster.yaml changes against it; empty when there is no record.
	BundleFrom    string          `json:"bundleFrom,omitempty"`
	BundleChanges []bundle.Change `json:"bundleChanges,omitempty"`
}

// UpToDate reports whether the plan changes nothing.
func (p Plan) UpToDate() bool {
	for _, h := range p.Hosts {
		if len(h.Changes) > 0 {
			return false
		}
	}
	return true
}

// Make plans the upgrade of cluster c from what the hosts run (installed, by host name) to
// spec.kubernetesVersion with the bundle m. Workers go in batches of batchPercent of them (at least one).
func Make(c *api.Cluster, installed map[string]Installed, m *bundle.Manifest, batchPercent int) Plan {
	s := c.Spec
	p := Plan{To: s.KubernetesVersion}
	refuse := func(format string, args ...any) { p.Refusals = append(p.Refusals, fmt.Sprintf(format, args...)) }
	target, err := version.ParseSemantic(s.KubernetesVersion)
	if err != nil {
		refuse("spec.kubernetesVersion %q is not a version: %v", s.KubernetesVersion, err)
		return p
	}

	// the API servers' version is the cluster's: the oldest of them is what every other component is held to
	oldestAPI, none := oldest(s, installed, api.RoleControlPlane, "kube-apiserver")
	for _, h := range none {
		refuse("%s runs no kube-apiserver privcloud installed: bring it up with 'privcloud init' or 'privcloud join' first", h)
	}
	if oldestAPI != nil {
		p.From = "v" + oldestAPI.String()
		switch {
		case target.LessThan(oldestAPI):
			refuse("%s is older than the cluster's %s: downgrades are not supported (restore a backup instead)", p.To, p.From)
		case target.Major() != oldestAPI.Major() || target.Minor() > oldestAPI.Minor()+1:
			refuse("%s to %s skips a minor version: upgrade to v%d.%d first", p.From, p.To, oldestAPI.Major(), oldestAPI.Minor()+1)
		}
	}

	// a host not yet brought up is joined, not upgraded: an upgrade never installs a service from nothing
	for _, h := range s.Hosts {
		if h.HasRole(api.RoleEtcd) && installed[h.Name]["etcd"] == "" {
			refuse("%s runs no etcd privcloud installed: bring it up with 'privcloud join' first", h.Name)
		}
		if (h.HasRole(api.RoleWorker) || h.HasRole(api.RoleControlPlane)) && installed[h.Name]["kubelet"] == "" {
			refuse("%s runs no kubelet privcloud installed: bring it up with 'privcloud join' first", h.Name)
		}
	}

	etcdTarget := bundleVersion(m, "etcd")
	for _, h := range s.Hosts {
		hp := HostPlan{Host: h.Name}
		for _, r := range h.Roles {
			hp.Roles = append(hp.Roles, string(r))
		}
		var want []string
		if h.HasRole(api.RoleEtcd) {
			want = append(want, EtcdComponents...)
		}
		if h.HasRole(api.RoleControlPlane) {
			want = append(want, ControlPlaneComponents...)
		}
		if h.IsNode() {
			want = append(want, NodeComponents...)
		}
		for _, comp := range want {
			from := installed[h.Name][comp]
			to := s.KubernetesVersion
			if slices.Contains(EtcdComponents, comp) {
				to = etcdTarget
			}
			if to == "" || from == to {
				continue
			}
			bc := m.Find(comp, to)
			if from == "" && (bc == nil || !bc.NeededBy(h)) {
				continue // neither installed nor meant for this host's roles (kubectl on workers, say)
			}
			if bc == nil {
				refuse("the bundle has no %s %s, which %s needs", comp, to, h.Name)
			}
			hp.Changes = append(hp.Changes, Change{Component: comp, From: from, To: to})
		}
		if kubelet, ok := parsed(installed[h.Name]["kubelet"]); ok && oldestAPI != nil {
			switch {
			case oldestAPI.LessThan(kubelet):
				refuse("the kubelet on %s (v%s) is newer than the API server (%s): the skew policy forbids it", h.Name, kubelet, p.From)
			case kubelet.Minor()+3 < target.Minor():
				refuse("the kubelet on %s (v%s) would be more than 3 minor versions older than %s while the control plane goes first: upgrade it to v%d.%d first",
					h.Name, kubelet, p.To, target.Major(), target.Minor()-3)
			}
		}
		p.Hosts = append(p.Hosts, hp)
	}
	if from, _ := oldest(s, installed, api.RoleEtcd, "etcd"); from != nil && etcdTarget != "" {
		to, err := version.ParseSemantic(etcdTarget)
		switch {
		case err != nil:
			refuse("the bundle's etcd version %q is not a version", etcdTarget)
		case to.LessThan(from):
			refuse("the bundle's etcd %s is older than the running v%s: etcd is never downgraded", etcdTarget, from)
		case to.Major() != from.Major() || to.Minor() > from.Minor()+1:
			refuse("etcd v%s to %s skips a minor version, which etcd does not support", from, etcdTarget)
		}
	}
	p.Batches = batches(c, p.Hosts, batchPercent)
	return p
}

// batches orders the hosts that change: etcd members and control planes one at a time (control planes
// before nodes, as the skew policy wants), then the workers in batches.
func batches(c *api.Cluster, hosts []HostPlan, percent int) [][]string {
	changes := map[string]bool{}
	for _, h := range hosts {
		changes[h.Host] = len(h.Changes) > 0
	}
	var out [][]string
	var workers []string
	for _, h := range c.Spec.Hosts {
		if !changes[h.Name] {
			continue
		}
		if h.HasRole(api.RoleControlPlane) || h.HasRole(api.RoleEtcd) {
			out = append(out, []string{h.Name})
		} else {
			workers = append(workers, h.Name)
		}
	}
	sort.Strings(workers)
	size := max(1, len(workers)*percent/100)
	for len(workers) > 0 {
		n := min(size, len(workers))
		out = append(out, workers[:n])
		workers = workers[n:]
	}
	return out
}

// bundleVersion is the version of a component the bundle carries (the first it lists), or "".
func bundleVersion(m *bundle.Manifest, name string) string {
	if c := m.Find(name, ""); c != nil && c.Kind == "binary" {
		return c.Version
	}
	return ""
}

// oldest is the oldest version of component the hosts with role run, and the hosts that run none.
func oldest(s api.ClusterSpec, installed map[string]Installed, role api.Role, component string) (*version.Version, []string) {
	var min *version.Version
	var none []string
	for _, h := range s.HostsWithRole(role) {
		v, ok := parsed(installed[h.Name][component])
		switch {
		case !ok:
			none = append(none, h.Name)
		case min == nil || v.LessThan(min):
			min = v
		}
	}
	return min, none
}

func parsed(v string) (*version.Version, bool) {
	if v == "" {
		return nil, false
	}
	pv, err := version.ParseSemantic(v)
	return pv, err == nil
}

// RefusedError is a plan with refusals: nothing may change.
type RefusedError struct{ Reasons []string }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the upgrade is refused (%d reasons): %s", len(e.Reasons), strings.Join(e.Reasons, "; "))
}

// ExitClass is PhaseFailed: the plan's checks failed.
func (e *RefusedError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }

// Refused is the plan's refusals as an error, or nil.
func (p Plan) Refused() error {
	if len(p.Refusals) == 0 {
		return nil
	}
	return &RefusedError{Reasons: p.Refusals}
}
