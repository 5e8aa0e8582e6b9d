package phases

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/templates"
)

// nodeData gathers what a node's files are made of.
func nodeData(r *workflow.Run, h api.Host) templates.Node {
	s := r.Cluster.Spec
	d := templates.Node{Version: s.KubernetesVersion, Name: h.Name, IP: h.InternalAddress, CgroupDriver: s.Kubelet.CgroupDriver,
		FailCgroupV1: s.Kubelet.FailCgroupV1 != nil && *s.Kubelet.FailCgroupV1, ClusterDNS: s.Network.ClusterDNS,
		DNSDomain: s.Network.DNSDomain, MaxPods: s.Kubelet.MaxPods, PodPidsLimit: s.Kubelet.PodPidsLimit, CipherSuites: templates.CipherSuites, PodCIDR: s.Network.PodCIDR, ClusterCIDR: s.Network.PodCIDR, Mode: s.KubeProxy.Mode}
	d.ExtraArgs = flagList(s.Kubelet.ExtraArgs)
	d.IPTables = "iptables"
	if p, err := netip.ParsePrefix(s.Network.PodCIDR); err == nil && p.Addr().Is6() {
		d.IPTables = "ip6tables"
	}
	d.APIServer, d.APILoadBalancer = "https://"+s.ControlPlaneEndpoint, s.APILoadBalancer.On()
	if d.APILoadBalancer {
		d.APIServer = "https://" + s.APILoadBalancer.Address()
	}
	if m := s.KubeProxy.Conntrack.MaxPerCore; m != nil {
		d.ConntrackMaxPerCore = *m
	}
	var labels, taints []string
	for k, v := range h.Labels {
		labels = append(labels, k+"="+v)
	}
	for _, t := range h.Taints {
		taints = append(taints, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	sort.Strings(labels) // a stable unit: map order must not restart the kubelet
	d.Labels, d.Taints = strings.Join(labels, ","), strings.Join(taints, ",")
	for k, v := range s.Kubelet.EvictionHard {
		d.EvictionHard = append(d.EvictionHard, templates.Setting{Key: k, Value: v})
	}
	sort.Slice(d.EvictionHard, func(i, j int) bool { return d.EvictionHard[i].Key < d.EvictionHard[j].Key })
	return d
}

func render(name string, data any) []byte {
	out, err := templates.Render(name, data)
	if err != nil {
		panic(err) // templates are fixed and covered by golden tests; a failure here is a programming error
	}
	return out
}

func hostPrep() workflow.Phase {
	return workflow.Phase{Name: "host-prep", Short: "Load kernel modules, set sysctls, create directories", RunHost: prepareHost}
}

// prepareHost writes the module and sysctl settings pod networking needs and applies them now. Hosts that
// cannot load modules (containers) keep what the machine loaded; a missing bridge netfilter is a warning.
func prepareHost(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if _, err := writeFiles(ctx, r, t,
		hostops.File{Path: "/etc/modules-load.d/privcloud.conf", Content: render("modules.conf", nil), Mode: 0o644},
		hostops.File{Path: "/etc/sysctl.d/99-privcloud.conf", Content: render("sysctl.conf", nil), Mode: 0o644}); err != nil {
		return err
	}
	res, err := t.Host.Run(ctx, `set -e
mkdir -p /etc/kubernetes/pki /var/lib/kubelet /var/lib/kube-proxy /etc/cni/net.d /opt/cni/bin
for m in overlay br_netfilter; do modprobe "$m" 2>/dev/null || true; done
sysctl -q -w net.ipv4.ip_forward=1
if [ -d /proc/sys/net/bridge ]; then
  sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
else
  echo no-br-netfilter
fi`)
	if err != nil {
		return err
	}
	if strings.Contains(string(res.Stdout), "no-br-netfilter") {
		r.Warn(t.Spec.Name, "br_netfilter is not loaded and cannot be: bridged pod traffic bypasses iptables, so Services may not reach pods on the same node")
	}
	return nil
}

func nodePhases() workflow.Phase {
	return workflow.Phase{Name: "node", Short: "Run the API load balancer, kubelet and kube-proxy on every node", Phases: []workflow.Phase{
		apiLoadBalancer(),
		{Name: "kubelet", Short: "Configure and start the kubelet with its node certificate; wait until the node registers", Roles: nodes, RunHost: runKubelet},
		{Name: "kube-proxy", Short: "Configure and start kube-proxy", Roles: nodes, RunHost: runKubeProxy},
	}}
}

func runKubelet(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	files, err := kubeletFiles(ctx, r, t, r.Cluster.Spec.KubernetesVersion)
	if err != nil {
		return err
	}
	if err := ensureRolled(ctx, r, t, "kubelet", files...); err != nil {
		return err
	}
	return withControlPlaneAPI(r, func(c *kube.Client) error {
		_, err := c.WaitNode(ctx, t.Spec.Name, "registration", 2*time.Minute, func(*corev1.Node) bool { return true })
		return err
	})
}

// kubeletFiles are the kubelet's configuration and unit on the host at version.
func kubeletFiles(ctx context.Context, r *workflow.Run, t *workflow.Target, version string) ([]hostops.File, error) {
	d := nodeData(r, t.Spec)
	d.Version = version
	resolvConf, _, err := podResolvConf(ctx, t.Host)
	if err != nil {
		return nil, err
	}
	d.ResolvConf = resolvConf
	return []hostops.File{
		{Path: "/var/lib/kubelet/config.yaml", Content: render("kubelet-config.yaml", d), Mode: 0o600},
		{Path: "/etc/systemd/system/kubelet.service", Content: render("kubelet.service", d), Mode: 0o600},
	}, nil
}

func runKubeProxy(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	return ensureRolled(ctx, r, t, "kube-proxy", kubeProxyFiles(r, t, r.Cluster.Spec.KubernetesVersion)...)
}

// kubeProxyFiles are kube-proxy's configuration and unit on the host at version.
func kubeProxyFiles(r *workflow.Run, t *workflow.Target, version string) []hostops.File {
	d := nodeData(r, t.Spec)
	d.Version = version
	return []hostops.File{
		{Path: "/var/lib/kube-proxy/config.yaml", Content: render("kube-proxy-config.yaml", d), Mode: 0o644},
		{Path: "/etc/systemd/system/kube-proxy.service", Content: render("kube-proxy.service", d), Mode: 0o600},
	}
}

func podNetwork() workflow.Phase {
	return workflow.Phase{Name: "network", Short: "Configure the pod network (flannel's VXLAN overlay, or the bridge CNI and routes between nodes)", Roles: nodes, RunHost: configureNetwork}
}

// cniConfig is the pod network's CNI configuration on every node (Multus, when on, wraps it).
const cniConfig = "/etc/cni/net.d/10-privcloud.conflist"

func configureNetwork(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	var needs []binaryNeed
	if r.Cluster.Spec.Network.Flannel() {
		needs = append(needs, binaryNeed{"flanneld", "set spec.network.plugin: bridge on a single layer-2 segment"})
	}
	if r.Cluster.Spec.Addons.Multus.On() {
		needs = append(needs, binaryNeed{multusComponent, "set spec.addons.multus.enabled: false"})
	}
	if err := requireBinaries(ctx, r, t, needs...); err != nil {
		return err
	}
	if r.Cluster.Spec.Network.Flannel() {
		return runFlannel(ctx, r, t)
	}
	return configureBridge(ctx, r, t)
}

// configureBridge writes the bridge CNI configuration for the node's pod CIDR (allocated by the
// controller-manager) and routes to every other node's pod CIDR.
func configureBridge(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if !r.Wet(t.Spec.Name, "write the bridge CNI configuration and pod routes once the node has its pod CIDR") {
		return nil
	}
	c, err := controlPlaneAPI(r)
	if err != nil {
		return err
	}
	defer c.Close()
	self, err := c.WaitNode(ctx, t.Spec.Name, "a pod CIDR", 2*time.Minute, func(n *corev1.Node) bool { return n.Spec.PodCIDR != "" })
	if err != nil {
		return err
	}
	list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	d := nodeData(r, t.Spec)
	d.PodCIDR = self.Spec.PodCIDR
	for _, n := range list.Items {
		if n.Name != t.Spec.Name && n.Spec.PodCIDR != "" && kube.InternalIP(&n) != "" {
			d.Routes = append(d.Routes, templates.Route{CIDR: n.Spec.PodCIDR, Via: kube.InternalIP(&n)})
		}
	}
	sort.Slice(d.Routes, func(i, j int) bool { return d.Routes[i].CIDR < d.Routes[j].CIDR })
	if err := writeCNIConfig(ctx, r, t, render("bridge.conflist", d)); err != nil {
		return err
	}
	return ensureService(ctx, r, t, "privcloud-pod-routes",
		hostops.File{Path: "/etc/systemd/system/privcloud-pod-routes.service", Content: render("pod-routes.service", d), Mode: 0o600})
}

func waitNodesReady() workflow.Phase {
	return workflow.Phase{Name: "wait-ready", Short: "Wait until every node reports Ready", Run: func(ctx context.Context, r *workflow.Run) error {
		return withControlPlaneAPI(r, func(c *kube.Client) error {
			for _, t := range r.TargetsFor(nodes) {
				if _, err := c.WaitNode(ctx, t.Spec.Name, "Ready", 3*time.Minute, kube.NodeReady); err != nil {
					return err
				}
			}
			return nil
		})
	}}
}

// nodeSettings is what cluster.yaml sets on host h's Node.
func nodeSettings(h api.Host) kube.NodeSettings {
	s := kube.NodeSettings{ControlPlane: h.HasRole(api.RoleControlPlane), Worker: h.HasRole(api.RoleWorker), Labels: h.Labels}
	for _, t := range h.Taints {
		s.Taints = append(s.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return s
}

// nodeRoles labels every node with its roles and taints the control planes that are not also workers, as
// kubeadm does: ordinary pods stay off them. The kubelet may not set node-role labels itself (NodeRestriction).
func nodeRoles() workflow.Phase {
	return workflow.Phase{Name: "node-roles", Short: "Label nodes with their roles and cluster.yaml's labels and taints; taint control planes that are not workers (NoSchedule)",
		Run: func(ctx context.Context, r *workflow.Run) error {
			var plans []string
			for _, t := range r.TargetsFor(nodes) {
				plans = append(plans, "set node "+t.Spec.Name+"'s roles, labels and taints")
			}
			if !r.Wet("", plans...) {
				return nil
			}
			return withControlPlaneAPI(r, func(c *kube.Client) error {
				for _, t := range r.TargetsFor(nodes) {
					changed, err := c.SetNode(ctx, t.Spec.Name, nodeSettings(t.Spec))
					if err != nil {
						return fmt.Errorf("node %s: %w", t.Spec.Name, err)
					}
					if changed {
						r.Changed(t.Spec.Name, "node roles, labels and taints set")
					}
				}
				return nil
			})
		}}
}
