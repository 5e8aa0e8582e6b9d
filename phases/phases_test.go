package phases

import (
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
)

func TestWorkflowsAreWellFormed(t *testing.T) {
	for _, wf := range []workflow.Workflow{Init(), Join(), Reset(), Upgrade(&UpgradeOptions{})} {
		if err := wf.Check(); err != nil {
			t.Errorf("%s: %v", wf.Name, err)
		}
		for _, s := range wf.Paths() {
			if s.Phase.Short == "" {
				t.Errorf("%s: phase %s has no description for its help", wf.Name, s.Path)
			}
		}
	}
}

func TestInitOrder(t *testing.T) {
	// Each phase depends on the ones before it; this is the order the cluster comes up in.
	assertOrder(t, Init(), "connect", "preflight/gather", "bundle", "host-prep", "containerd/config", "containerd/images", "certs/generate", "etcd",
		"control-plane/apiserver", "control-plane/controller-manager", "control-plane/scheduler", "cluster-rbac",
		"node/kubelet", "network", "wait-ready", "addons/coredns", "kubeconfig")
}

// Join configures every node for what cluster.yaml turned on since init (Multus, the NetworkPolicy firewall):
// their credentials must have their roles before the network phase writes the nodes' CNI configuration, or
// every new pod's sandbox fails.
func TestJoinGrantsRolesBeforeConfiguringNodes(t *testing.T) {
	assertOrder(t, Join(), "connect", "discover", "certs/generate", "control-plane/apiserver", "cluster-rbac", "node/kubelet", "network", "network-policy")
}

func assertOrder(t *testing.T, wf workflow.Workflow, want ...string) {
	t.Helper()
	var got []string
	for _, s := range wf.Steps() {
		got = append(got, s.Path)
	}
	pos := -1
	for _, w := range want {
		i := slices.Index(got, w)
		if i <= pos {
			t.Fatalf("%s: phase %s missing or out of order in %s", wf.Name, w, strings.Join(got, " "))
		}
		pos = i
	}
}

func TestAddonSkipRules(t *testing.T) {
	c := api.Example()
	r := &workflow.Run{Cluster: c}
	skip := map[string]string{}
	for _, s := range Init().Steps() {
		if s.Phase.Skip != nil {
			skip[s.Path] = s.Phase.Skip(r)
		}
	}
	if skip["addons/quay"] != "spec.addons.quay.enabled is false in cluster.yaml" || skip["addons/kata"] == "" {
		t.Errorf("quay and kata are off by default and must be skipped: %q", skip)
	}
	if skip["addons/coredns"] != "" || skip["addons/multus"] != "" {
		t.Errorf("coredns and multus are on by default: %q", skip)
	}
	c.Spec.Addons.Quay.Enabled = true
	if s := Init().Steps(); s != nil {
		for _, st := range s {
			if st.Path == "addons/quay" && st.Phase.Skip(r) != "" {
				t.Error("enabled quay must not be skipped")
			}
		}
	}
}

func TestUsableNameservers(t *testing.T) {
	got := usableNameservers([]byte("# generated\nsearch lab\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fd00::53\noptions edns0\n"))
	if strings.Join(got, ",") != "10.0.0.2,fd00::53" {
		t.Errorf("usableNameservers = %q: loopback stubs are unreachable from pods, the others count", got)
	}
	if got := usableNameservers(nil); len(got) != 0 {
		t.Errorf("an empty resolv.conf has no nameserver, got %q", got)
	}
}
