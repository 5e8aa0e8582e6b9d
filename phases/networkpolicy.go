package phases

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

// kubeRouterHealthPort is where kube-router's firewall answers /healthz (its default).
const kubeRouterHealthPort = 20244

// networkPolicy runs kube-router's firewall controller on every node once the node is registered (it reads its
// own Node) and its pod network is configured: a NetworkPolicy is enforced, never silently ignored.
func networkPolicy() workflow.Phase {
	return workflow.Phase{Name: "network-policy", Short: "Enforce NetworkPolicy on every node (kube-router's firewall: iptables and ipset rules)",
		Roles: nodes, RunHost: runNetworkPolicy}
}

func runNetworkPolicy(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	n := r.Cluster.Spec.Network
	if !n.PolicyEnforced() {
		return workflow.Skip("spec.network.policy is none: NetworkPolicy objects are stored and not enforced")
	}
	if err := requireBinary(ctx, r, t, "kube-router", "set spec.network.policy: none if something else enforces NetworkPolicy"); err != nil {
		return err
	}
	d := templates.KubeRouter{Name: t.Spec.Name, ServiceCIDR: n.ServiceCIDR, HealthPort: kubeRouterHealthPort}
	if err := ensureService(ctx, r, t, pki.KubeRouterUnit, hostops.File{Path: "/etc/systemd/system/" + pki.KubeRouterUnit + ".service",
		Content: render("privcloud-kube-router.service", d), Mode: 0o600}); err != nil {
		return err
	}
	if !r.Wet(t.Spec.Name, "wait until the NetworkPolicy firewall is healthy") {
		return nil
	}
	return hostops.WaitHealthy(ctx, t.Host, pki.KubeRouterUnit, net.JoinHostPort("127.0.0.1", strconv.Itoa(kubeRouterHealthPort)), "/healthz", "", nil, 3*time.Minute)
}
