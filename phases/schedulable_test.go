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
