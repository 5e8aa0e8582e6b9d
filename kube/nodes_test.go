package kube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func readyNode(name string, unschedulable bool) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: unschedulable},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func TestUncordonOnlyWhatPrivcloudCordoned(t *testing.T) {
	ctx := context.Background()
	c := &Client{Kube: fake.NewSimpleClientset(readyNode("h1", false), readyNode("h2", true))}
	for _, name := range []string{"h1", "h2"} {
		if found, err := c.Cordon(ctx, name, "upgrade apply"); err != nil || !found {
			t.Fatalf("cordon %s: %v %v", name, found, err)
		}
	}
	for name, want := range map[string]bool{"h1": true, "h2": false} {
		done, err := c.Uncordon(ctx, name)
		if err != nil || done != want {
			t.Errorf("uncordon %s: %v %v, want %v", name, done, err, want)
		}
	}
	h1, _ := c.Kube.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	h2, _ := c.Kube.CoreV1().Nodes().Get(ctx, "h2", metav1.GetOptions{})
	if h1.Spec.Unschedulable || h1.Annotations[CordonedBy] != "" {
		t.Errorf("h1, cordoned by the upgrade, is still cordoned: %+v", h1.Spec)
	}
	if !h2.Spec.Unschedulable {
		t.Error("h2, cordoned by an operator before the upgrade, was uncordoned")
	}
	if found, err := c.Cordon(ctx, "h9", "upgrade apply"); err != nil || found {
		t.Errorf("a node that does not exist: found %v, %v", found, err)
	}
}

func TestSetNodeRolesLabelsAndTaints(t *testing.T) {
	ctx := context.Background()
	c := &Client{Kube: fake.NewSimpleClientset(readyNode("cp", false), readyNode("both", false), readyNode("w", false))}
	for _, n := range []struct {
		name                 string
		controlPlane, worker bool
	}{{"cp", true, false}, {"both", true, true}, {"w", false, true}} {
		if changed, err := c.SetNodeRoles(ctx, n.name, n.controlPlane, n.worker); err != nil || !changed {
			t.Fatalf("%s: changed %v, %v", n.name, changed, err)
		}
		if changed, err := c.SetNodeRoles(ctx, n.name, n.controlPlane, n.worker); err != nil || changed {
			t.Errorf("%s: a second call changed the node again (%v, %v)", n.name, changed, err)
		}
	}
	get := func(name string) *corev1.Node {
		n, _ := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return n
	}
	cp, both, w := get("cp"), get("both"), get("w")
	if _, ok := cp.Labels[ControlPlaneRole]; !ok || len(cp.Spec.Taints) != 1 || cp.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("a control plane: labels %v, taints %v", cp.Labels, cp.Spec.Taints)
	}
	if _, ok := both.Labels[WorkerRole]; !ok || len(both.Spec.Taints) != 0 {
		t.Errorf("a control plane that is also a worker takes pods: labels %v, taints %v", both.Labels, both.Spec.Taints)
	}
	if _, ok := w.Labels[ControlPlaneRole]; ok || len(w.Spec.Taints) != 0 {
		t.Errorf("a worker: labels %v, taints %v", w.Labels, w.Spec.Taints)
	}
	// the control plane becomes a worker too: its taint goes
	if _, err := c.SetNodeRoles(ctx, "cp", true, true); err != nil || len(get("cp").Spec.Taints) != 0 {
		t.Errorf("the taint stayed on a control plane that became a worker: %v", get("cp").Spec.Taints)
	}
}

// cluster.yaml's labels and taints reach a running node (the kubelet sets its flags' only at registration):
// changed values follow, those taken out of cluster.yaml go, and what others set on the node stays.
func TestSetNodeFollowsClusterYAMLAndLeavesOthersAlone(t *testing.T) {
	ctx := context.Background()
	n := readyNode("w", false)
	n.Labels = map[string]string{"team": "a", "zone": "z1"}                                                // zone: the operator's, by kubectl
	n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}, // from registration
		{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}} // the operator's
	c := &Client{Kube: fake.NewSimpleClientset(n)}
	get := func() *corev1.Node { n, _ := c.Kube.CoreV1().Nodes().Get(ctx, "w", metav1.GetOptions{}); return n }
	s := NodeSettings{Worker: true, Labels: map[string]string{"team": "a"}, Taints: []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}}
	if changed, err := c.SetNode(ctx, "w", s); err != nil || !changed { // records what privcloud set
		t.Fatalf("first: %v %v", changed, err)
	}
	if changed, err := c.SetNode(ctx, "w", s); err != nil || changed {
		t.Fatalf("converged: %v %v", changed, err)
	}
	s = NodeSettings{Worker: true, Labels: map[string]string{"team": "b", "tier": "db"}, Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}}
	if _, err := c.SetNode(ctx, "w", s); err != nil {
		t.Fatal(err)
	}
	got := get()
	if got.Labels["team"] != "b" || got.Labels["tier"] != "db" || got.Labels["zone"] != "z1" {
		t.Errorf("labels %v", got.Labels)
	}
	if !sameTaints(got.Spec.Taints, []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}, {Key: "maintenance", Effect: corev1.TaintEffectNoExecute}}) {
		t.Errorf("taints %v", got.Spec.Taints)
	}
	// everything taken out of cluster.yaml goes; the operator's stay
	if _, err := c.SetNode(ctx, "w", NodeSettings{Worker: true}); err != nil {
		t.Fatal(err)
	}
	got = get()
	if _, ok := got.Labels["team"]; ok || got.Labels["zone"] != "z1" || got.Labels["tier"] != "" {
		t.Errorf("labels %v", got.Labels)
	}
	if len(got.Spec.Taints) != 1 || got.Spec.Taints[0].Key != "maintenance" || got.Annotations[ManagedLabels] != "" || got.Annotations[ManagedTaints] != "" {
		t.Errorf("taints %v, annotations %v", got.Spec.Taints, got.Annotations)
	}
}

// A control-plane taint listed in cluster.yaml too (a kubeadm habit) is set once: the API server refuses two
// taints of one key and effect.
func TestSetNodeSetsADeclaredRoleTaintOnce(t *testing.T) {
	ctx := context.Background()
	c := &Client{Kube: fake.NewSimpleClientset(readyNode("cp", false))}
	s := NodeSettings{ControlPlane: true, Taints: []corev1.Taint{{Key: ControlPlaneRole, Effect: corev1.TaintEffectNoSchedule}}}
	if _, err := c.SetNode(ctx, "cp", s); err != nil {
		t.Fatal(err)
	}
	n, _ := c.Kube.CoreV1().Nodes().Get(ctx, "cp", metav1.GetOptions{})
	if len(n.Spec.Taints) != 1 {
		t.Errorf("taints %v", n.Spec.Taints)
	}
}
