package phases

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/privcloud/privcloud/kube"
)

func readyNode(name string, unschedulable bool) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: unschedulable},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func TestUncordonOnlyWhatPrivcloudCordoned(t *testing.T) {
	ctx := context.Background()
	c := &kube.Client{Kube: fake.NewSimpleClientset(readyNode("h1", false), readyNode("h2", true))}
	for _, name := range []string{"h1", "h2"} {
		if found, err := cordon(ctx, c, name, upgradeCordon); err != nil || !found {
			t.Fatalf("cordon %s: %v %v", name, found, err)
		}
	}
	for name, want := range map[string]bool{"h1": true, "h2": false} {
		done, err := uncordon(ctx, c, name)
		if err != nil || done != want {
			t.Errorf("uncordon %s: %v %v, want %v", name, done, err, want)
		}
	}
	h1, _ := c.Kube.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	h2, _ := c.Kube.CoreV1().Nodes().Get(ctx, "h2", metav1.GetOptions{})
	if h1.Spec.Unschedulable || h1.Annotations[cordonedBy] != "" {
		t.Errorf("h1, cordoned by the upgrade, is still cordoned: %+v", h1.Spec)
	}
	if !h2.Spec.Unschedulable {
		t.Error("h2, cordoned by an operator before the upgrade, was uncordoned")
	}
	if found, err := cordon(ctx, c, "h9", upgradeCordon); err != nil || found {
		t.Errorf("a node that does not exist: found %v, %v", found, err)
	}
}

func TestOnlySchedulableNode(t *testing.T) {
	ctx := context.Background()
	notReady := readyNode("h3", false)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	c := &kube.Client{Kube: fake.NewSimpleClientset(readyNode("h1", false), readyNode("h2", true), notReady)}
	if alone, err := onlySchedulableNode(ctx, c, "h1"); err != nil || !alone {
		t.Errorf("h1 beside a cordoned and a NotReady node must count as alone: %v %v", alone, err)
	}
	if alone, _ := onlySchedulableNode(ctx, c, "h2"); alone {
		t.Error("h2 has h1 to drain into")
	}
}
