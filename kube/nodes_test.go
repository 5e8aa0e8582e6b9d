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
