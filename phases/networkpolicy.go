package phases

import (
	"context"
	"net"
	"path"
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
		return removeNetworkPolicy(ctx, r, t)
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

// removeNetworkPolicy stops and removes the firewall of a node whose cluster turned NetworkPolicy enforcement
// off (spec.network.policy: none): its unit, its kubeconfig, its iptables chains and its ipsets, as
// kube-router's own cleanup does. Left running, it would go on enforcing from a credential no longer renewed.
// A node without the firewall costs one read-only command.
func removeNetworkPolicy(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	const off = "spec.network.policy is none: NetworkPolicy objects are stored and not enforced"
	unit := "/etc/systemd/system/" + pki.KubeRouterUnit + ".service"
	present, err := hostHas(ctx, t.Host, fileTest(unit))
	if err != nil {
		return err
	}
	if !present {
		return workflow.Skip(off)
	}
	// the unit goes last: a run cut off, or a rule that could not be removed, leaves it as the mark that the
	// firewall's removal is still to finish
	return runScript(ctx, r, t, "remove the NetworkPolicy firewall ("+off+")", `set -u
systemctl disable --now -q `+pki.KubeRouterUnit+` 2>/dev/null || true
`+removeChainsScript("filter", "(KUBE-ROUTER|KUBE-NWPLCY|KUBE-POD-FW)-", "the NetworkPolicy firewall's rules", true)+`
`+destroyIPSetsScript("(KUBE-SRC|KUBE-DST)-", true)+`
rm -f `+path.Join(pki.RemoteConfDir, "kube-router.conf")+` `+unit+`
systemctl daemon-reload
echo "removed `+pki.KubeRouterUnit+`"`)
}
