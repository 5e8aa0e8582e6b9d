package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/privcloud/privcloud/internal/wait"
)

// CordonedBy marks a node privcloud cordoned, with why: only such a node is uncordoned afterwards (one an
// operator cordoned stays so), also by a later run when the one that cordoned it stopped half-way.
const CordonedBy = "privcloud.io/cordoned-by"

// Cordon marks the node unschedulable (for reason, kept in its CordonedBy annotation) unless it already is.
// It reports whether the node exists.
func (c *Client) Cordon(ctx context.Context, name, reason string) (bool, error) {
	n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil || n.Spec.Unschedulable {
		return err == nil, err
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": true},
		"metadata": map[string]any{"annotations": map[string]any{CordonedBy: reason}}})
	_, err = c.Kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return true, err
}

// Uncordon makes the node schedulable again if privcloud cordoned it, and reports whether it did.
func (c *Client) Uncordon(ctx context.Context, name string) (bool, error) {
	n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	if _, ours := n.Annotations[CordonedBy]; !ours {
		return false, nil
	}
	patch := []byte(`{"spec":{"unschedulable":false},"metadata":{"annotations":{"` + CordonedBy + `":null}}}`)
	_, err = c.Kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err == nil, err
}

// EvictPods moves the pods of a cordoned node away through the eviction API, which honours
// PodDisruptionBudgets: an eviction a budget refuses is tried again until limit. DaemonSet and static pods
// stay, as kubectl drain leaves them.
func (c *Client) EvictPods(ctx context.Context, name string, limit time.Duration) error {
	var blocked []string
	err := wait.Poll(ctx, limit, 2*time.Second, func() error {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
		if err != nil {
			return err
		}
		var left []string
		blocked = nil
		for _, p := range pods.Items {
			if !evictable(&p) {
				continue
			}
			left = append(left, p.Namespace+"/"+p.Name)
			ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
			err := c.Kube.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
			switch {
			case apierrors.IsTooManyRequests(err):
				blocked = append(blocked, p.Namespace+"/"+p.Name)
			case err != nil && !apierrors.IsNotFound(err):
				return err
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("pods still on the node: %s", strings.Join(left, ", "))
		}
		return nil
	})
	if err != nil && len(blocked) > 0 {
		return fmt.Errorf("drain: %w (a PodDisruptionBudget refused the eviction of %s)", err, strings.Join(blocked, ", "))
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// evictable is a pod a drain moves away: not a DaemonSet's (it would come back), not a static pod, not done.
func evictable(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}

// WaitNode polls a node until check accepts it.
func (c *Client) WaitNode(ctx context.Context, name, what string, limit time.Duration, check func(*corev1.Node) bool) (*corev1.Node, error) {
	var n *corev1.Node
	err := wait.Poll(ctx, limit, time.Second, func() error {
		var err error
		if n, err = c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if !check(n) {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return n, fmt.Errorf("node %s: %s not seen within %s (last: %v)", name, what, limit, err)
	}
	return n, err
}

// NodeReady reports whether the node's Ready condition is true.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// InternalIP is the node's InternalIP address, or "".
func InternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// Node role labels and the control-plane taint, as kubeadm sets them: tools and users select nodes by them,
// and ordinary pods stay off control planes that are not also workers.
const (
	ControlPlaneRole = "node-role.kubernetes.io/control-plane"
	WorkerRole       = "node-role.kubernetes.io/worker"
)

// NodeSettings is what cluster.yaml sets on a Node: its roles (role labels, the control-plane taint of a
// control plane that is not also a worker) and the host's own labels and taints.
type NodeSettings struct {
	ControlPlane, Worker bool
	Labels               map[string]string
	Taints               []corev1.Taint
}

// Annotations recording the labels and taints of cluster.yaml privcloud set on a Node, so that those taken out
// of cluster.yaml are removed while what others set stays.
const (
	ManagedLabels = "privcloud.io/labels"
	ManagedTaints = "privcloud.io/taints"
)

// SetNodeRoles labels the node with its roles and taints a control plane that is not also a worker
// (NoSchedule), removing labels and that taint of roles it no longer has. It reports whether it changed the node.
func (c *Client) SetNodeRoles(ctx context.Context, name string, controlPlane, worker bool) (bool, error) {
	return c.SetNode(ctx, name, NodeSettings{ControlPlane: controlPlane, Worker: worker})
}

// SetNode makes the node carry s: the role labels and taint as SetNodeRoles says, and s's labels and taints
// (a taint is its key and effect; its value follows s), removing those privcloud set earlier that s no longer
// has. The kubelet applies its --node-labels and --register-with-taints only when the node registers, so a
// change to cluster.yaml reaches a running node only here. It reports whether it changed the node.
func (c *Client) SetNode(ctx context.Context, name string, s NodeSettings) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		before := n.DeepCopy()
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		for role, has := range map[string]bool{ControlPlaneRole: s.ControlPlane, WorkerRole: s.Worker} {
			if has {
				n.Labels[role] = ""
			} else {
				delete(n.Labels, role)
			}
		}
		for _, k := range strings.Split(n.Annotations[ManagedLabels], ",") {
			if _, keep := s.Labels[k]; k != "" && !keep {
				delete(n.Labels, k)
			}
		}
		maps.Copy(n.Labels, s.Labels)
		setRecord(n.Annotations, ManagedLabels, slices.Sorted(maps.Keys(s.Labels)))

		var wanted []corev1.Taint // one per key and effect, as the API server requires
		add := func(t corev1.Taint) {
			if !slices.ContainsFunc(wanted, func(w corev1.Taint) bool { return taintID(w) == taintID(t) }) {
				wanted = append(wanted, t)
			}
		}
		for _, t := range s.Taints {
			add(t)
		}
		if s.ControlPlane && !s.Worker {
			add(corev1.Taint{Key: ControlPlaneRole, Effect: corev1.TaintEffectNoSchedule})
		}
		for i, w := range wanted { // a NoExecute taint keeps the time it was first added
			if j := slices.IndexFunc(n.Spec.Taints, func(t corev1.Taint) bool { return taintID(t) == taintID(w) }); j >= 0 {
				wanted[i].TimeAdded = n.Spec.Taints[j].TimeAdded
			}
		}
		ours := strings.Split(n.Annotations[ManagedTaints], ",")
		n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			// the control-plane taint is privcloud's whoever set it; the others, if privcloud set them
			return t.Key == ControlPlaneRole || slices.Contains(ours, taintID(t)) || slices.ContainsFunc(wanted, func(w corev1.Taint) bool { return taintID(w) == taintID(t) })
		})
		n.Spec.Taints = append(n.Spec.Taints, wanted...)
		var ids []string
		for _, t := range s.Taints {
			ids = append(ids, taintID(t))
		}
		setRecord(n.Annotations, ManagedTaints, ids)
		if equality.Semantic.DeepEqual(before.Labels, n.Labels) && sameTaints(before.Spec.Taints, n.Spec.Taints) &&
			equality.Semantic.DeepEqual(before.Annotations, n.Annotations) {
			return nil
		}
		_, err = c.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		changed = err == nil
		return err
	})
	return changed, err
}

// taintID names a taint by its key and effect: a node holds at most one of each.
func taintID(t corev1.Taint) string { return t.Key + ":" + string(t.Effect) }

// setRecord records ids in annotation key, or removes it when there are none.
func setRecord(annotations map[string]string, key string, ids []string) {
	if len(ids) == 0 {
		delete(annotations, key)
		return
	}
	annotations[key] = strings.Join(ids, ",")
}

// sameTaints compares taints by key, effect and value, whatever their order.
func sameTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for _, t := range a {
		if !slices.ContainsFunc(b, func(u corev1.Taint) bool { return taintID(u) == taintID(t) && u.Value == t.Value }) {
			return false
		}
	}
	return true
}
