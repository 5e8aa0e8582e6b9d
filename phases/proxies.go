package phases

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
)

// canaryName names the selector-less Service and EndpointSlice (kube-system) whose changes prove that every
// node's kube-proxy follows the API server. Nothing sends traffic to it.
const canaryName = "privcloud-canary"

// proxyFollowLimit bounds the wait for every kube-proxy to see a change: a client that lost the API server backs
// off up to a minute between reconnection attempts.
const proxyFollowLimit = 2 * time.Minute

// proxiesFollow proves that every node's kube-proxy receives EndpointSlice changes now, before a drain takes
// pods away: it changes the canary EndpointSlice and waits until each kube-proxy has counted the change. A
// kube-proxy still reconnecting after an API server restart keeps its node's rules as they were, and that
// node would go on sending Service traffic to the drained pods.
func proxiesFollow(ctx context.Context, r *workflow.Run, c *kube.Client) error {
	var proxies []*workflow.Target
	for _, t := range r.TargetsFor(nodes) {
		if t.Host != nil {
			proxies = append(proxies, t)
		}
	}
	before, err := askEach(ctx, r, proxies, endpointChanges)
	if err != nil {
		return fmt.Errorf("kube-proxy's EndpointSlice changes: %w", err)
	}
	if err := touchCanary(ctx, r, c); err != nil {
		return fmt.Errorf("canary EndpointSlice: %w", err)
	}
	return wait.Poll(ctx, proxyFollowLimit, gateEvery, func() error {
		now, _ := askEach(ctx, r, proxies, func(ctx context.Context, t *workflow.Target) (int, error) {
			n, err := endpointChanges(ctx, t)
			if err != nil {
				return -1, nil // not answering counts as behind
			}
			return n, nil
		})
		var behind []string
		for i, t := range proxies {
			if now[i] <= before[i] {
				behind = append(behind, t.Spec.Name)
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("kube-proxy on %s has not seen an EndpointSlice change made %s ago: it does not follow the API server, and a drain now would leave its node sending Service traffic to removed pods",
				strings.Join(behind, ", "), proxyFollowLimit)
		}
		return nil
	})
}

// endpointChanges reads how many EndpointSlice changes the host's kube-proxy has counted (its metrics on
// 127.0.0.1:10249, reached through SSH).
func endpointChanges(ctx context.Context, t *workflow.Target) (int, error) {
	p := hostops.NewHealthProbe(t.Host, "http", "127.0.0.1:10249", "/metrics", "", nil)
	defer p.Close()
	body, err := p.Get(ctx)
	if err != nil {
		return 0, err
	}
	return kube.MetricValue(body, "kubeproxy_sync_proxy_rules_endpoint_changes_total")
}

// touchCanary creates the canary Service and EndpointSlice, or changes the slice's port.
func touchCanary(ctx context.Context, r *workflow.Run, c *kube.Client) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: canaryName, Namespace: "kube-system", Labels: map[string]string{"app.kubernetes.io/managed-by": "privcloud"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9, Protocol: corev1.ProtocolTCP}}}}
	if _, err := c.Kube.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	slices := c.Kube.DiscoveryV1().EndpointSlices("kube-system")
	current, err := slices.Get(ctx, canaryName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = slices.Create(ctx, canarySlice(r, 1), metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	port := int32(1)
	if len(current.Ports) > 0 && current.Ports[0].Port != nil {
		port = *current.Ports[0].Port%60000 + 1
	}
	next := canarySlice(r, port)
	next.ResourceVersion = current.ResourceVersion
	_, err = slices.Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func canarySlice(r *workflow.Run, port int32) *discoveryv1.EndpointSlice {
	proto := corev1.ProtocolTCP
	ready := true
	// the address of a control plane: an address of the cluster's own, never dialled
	addr := r.TargetsFor(controlPlane)[0].Spec.InternalAddress
	family := discoveryv1.AddressTypeIPv4
	if strings.Contains(addr, ":") {
		family = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: canaryName, Namespace: "kube-system", Labels: map[string]string{
			discoveryv1.LabelServiceName: canaryName, discoveryv1.LabelManagedBy: "privcloud"}},
		AddressType: family,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Port: &port, Protocol: &proto}},
	}
}

// removeCanary deletes the canary Service and EndpointSlice.
func removeCanary(ctx context.Context, c *kube.Client) error {
	err := c.Kube.CoreV1().Services("kube-system").Delete(ctx, canaryName, metav1.DeleteOptions{})
	serr := c.Kube.DiscoveryV1().EndpointSlices("kube-system").Delete(ctx, canaryName, metav1.DeleteOptions{})
	return errors.Join(ignoreNotFound(err), ignoreNotFound(serr))
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
