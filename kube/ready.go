package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/privcloud/privcloud/internal/wait"
)

// Ready tells whether an object has reached the state its kind promises, in the sense of `kubectl rollout
// status`: a Deployment, DaemonSet or StatefulSet has every replica updated and available, a CRD is
// established. Other kinds are ready once they exist. The message says what is still missing.
func Ready(obj *unstructured.Unstructured) (bool, string) {
	n := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(obj.Object, path...)
		return v
	}
	switch obj.GetKind() {
	case "Deployment", "StatefulSet", "DaemonSet":
		// status describes the latest spec only once its controller has seen it
		if obj.GetGeneration() > n("status", "observedGeneration") {
			return false, "the controller has not seen the latest spec yet"
		}
	}
	switch obj.GetKind() {
	case "Deployment", "StatefulSet":
		want := int64(1)
		if v, found, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas"); found {
			want = v
		}
		ready := n("status", "availableReplicas")
		if obj.GetKind() == "StatefulSet" {
			ready = n("status", "readyReplicas")
		}
		switch {
		case n("status", "updatedReplicas") < want:
			return false, fmt.Sprintf("%d of %d replicas updated", n("status", "updatedReplicas"), want)
		case n("status", "replicas") > want:
			return false, fmt.Sprintf("%d old replicas still terminating", n("status", "replicas")-want)
		case ready < want:
			return false, fmt.Sprintf("%d of %d replicas available", ready, want)
		}
	case "DaemonSet":
		want := n("status", "desiredNumberScheduled")
		switch {
		case n("status", "updatedNumberScheduled") < want:
			return false, fmt.Sprintf("%d of %d pods updated", n("status", "updatedNumberScheduled"), want)
		case n("status", "numberAvailable") < want:
			return false, fmt.Sprintf("%d of %d pods available", n("status", "numberAvailable"), want)
		}
	case "CustomResourceDefinition":
		if c := condition(obj, "Established"); c != nil && c["status"] == "True" {
			return true, ""
		}
		return false, "not established yet"
	case "Prometheus", "Alertmanager":
		// the Prometheus Operator's resources: their pods run once the operator says Available for this
		// generation
		if obj.GroupVersionKind().Group != "monitoring.coreos.com" {
			break
		}
		c := condition(obj, "Available")
		switch {
		case c == nil:
			return false, "the operator has not reported on it yet"
		case n64(c, "observedGeneration") < obj.GetGeneration():
			return false, "the operator has not reconciled its latest change yet"
		case c["status"] != "True":
			return false, fmt.Sprintf("not available: %v", c["message"])
		}
	}
	return true, ""
}

// condition is the status condition of obj of that type, or nil.
func condition(obj *unstructured.Unstructured, typ string) map[string]any {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

func n64(m map[string]any, field string) int64 {
	v, _, _ := unstructured.NestedInt64(m, field)
	return v
}

// WaitReady waits, object by object, until each is Ready (a Service until it has a ready endpoint). When the
// limit passes, the error names the object, what it still lacks and why its pods are not running.
func (c *Client) WaitReady(ctx context.Context, objs []*unstructured.Unstructured, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, obj := range objs {
		var cur *unstructured.Unstructured
		// a quarter of a second: a CRD is established, a Deployment rolled out, well within one; each check is one GET
		err := wait.Poll(ctx, time.Until(deadline), 250*time.Millisecond, func() error {
			var err error
			if cur, err = c.Get(ctx, obj); err != nil {
				return err
			}
			if cur == nil {
				return errors.New("does not exist")
			}
			if cur.GetKind() == "Service" {
				return c.serviceReady(ctx, cur)
			}
			if ok, why := Ready(cur); !ok {
				return errors.New(why)
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s not ready after %s: %v%s", Name(obj), limit.Round(time.Second), err, c.podTrouble(ctx, cur))
		}
	}
	return nil
}

// serviceReady requires a ready endpoint behind a Service with a selector.
func (c *Client) serviceReady(ctx context.Context, svc *unstructured.Unstructured) error {
	if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); len(sel) == 0 {
		return nil
	}
	slices, err := c.Kube.DiscoveryV1().EndpointSlices(svc.GetNamespace()).List(ctx,
		metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc.GetName()})
	if err != nil {
		return err
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				return nil
			}
		}
	}
	return errors.New("no ready endpoint")
}

// podTrouble describes the pods of a workload that are not running well (waiting reasons such as
// ImagePullBackOff or CrashLoopBackOff, with their messages), or "" for other objects.
func (c *Client) podTrouble(ctx context.Context, obj *unstructured.Unstructured) string {
	if obj == nil {
		return ""
	}
	sel, found, _ := unstructured.NestedStringMap(obj.Object, "spec", "selector", "matchLabels")
	if !found || len(sel) == 0 {
		return ""
	}
	pods, err := c.Kube.CoreV1().Pods(obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		for _, line := range podProblems(&p) {
			fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, line)
		}
	}
	return b.String()
}

// podProblems lists why a pod is not running: unschedulable, containers waiting or restarting.
func podProblems(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			out = append(out, "not scheduled: "+c.Message)
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		switch {
		case s.State.Waiting != nil && s.State.Waiting.Reason != "ContainerCreating" && s.State.Waiting.Reason != "PodInitializing":
			out = append(out, fmt.Sprintf("container %s %s: %s", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message))
		case s.State.Terminated != nil && s.State.Terminated.ExitCode != 0:
			out = append(out, fmt.Sprintf("container %s exited %d: %s", s.Name, s.State.Terminated.ExitCode, s.State.Terminated.Message))
		case s.RestartCount > 0 && s.LastTerminationState.Terminated != nil:
			t := s.LastTerminationState.Terminated
			out = append(out, fmt.Sprintf("container %s restarted %d times, last exit %d %s", s.Name, s.RestartCount, t.ExitCode, t.Reason))
		}
	}
	if len(out) == 0 && p.Status.Phase != corev1.PodRunning {
		out = append(out, "phase "+string(p.Status.Phase))
	}
	return out
}

// WaitLease waits until a leader-election lease in kube-system has a holder, which a controller-manager or
// scheduler takes once it runs and reaches the API server, and returns the holder.
func (c *Client) WaitLease(ctx context.Context, name string, limit time.Duration) (string, error) {
	var holder string
	err := wait.Poll(ctx, limit, time.Second, func() error {
		lease, err := c.Kube.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return errors.New("nobody holds it yet")
		}
		holder = *lease.Spec.HolderIdentity
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return "", fmt.Errorf("no %s holds its lease after %s: %v", name, limit, err)
	}
	return holder, err
}
