package templates

import (
	"strings"
	"testing"

	"github.com/privcloud/privcloud/internal/golden"
)

var labContainerd = Containerd{Version: "v2.2.1", DefaultRuntime: "runc", SystemdCgroup: false, RestrictOOMScoreAdj: true,
	Kata: true, KataHandler: "kata", SandboxImage: "registry.k8s.io/pause:3.10"}

func render(t *testing.T, name string, data any) string {
	t.Helper()
	out, err := Render(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestContainerdService(t *testing.T) {
	golden.Assert(t, render(t, "containerd.service", labContainerd))
}
func TestContainerdConfig(t *testing.T) { golden.Assert(t, render(t, "containerd-config.toml", nil)) }
func TestContainerdDropInLab(t *testing.T) {
	golden.Assert(t, render(t, "containerd-privcloud.toml", labContainerd))
}

func TestContainerdDropInDefaults(t *testing.T) {
	golden.Assert(t, render(t, "containerd-privcloud.toml", Containerd{Version: "v2.2.1", DefaultRuntime: "runc", SystemdCgroup: true,
		SandboxImage: "registry.k8s.io/pause:3.10"}))
}

func TestMissingFieldIsAnError(t *testing.T) {
	if _, err := Render("containerd-privcloud.toml", map[string]any{"Version": "x"}); err == nil {
		t.Error("a template must not render with a value missing")
	}
}

func TestEtcdService(t *testing.T) {
	golden.Assert(t, render(t, "etcd.service", Etcd{Name: "h1", IP: "10.77.0.11", DataDir: "/var/lib/etcd",
		BootstrapFile: "/etc/kubernetes/etcd-bootstrap.env", ExtraArgs: []string{"quota-backend-bytes=8589934592"}}))
}

func TestAPIServerService(t *testing.T) {
	golden.Assert(t, render(t, "kube-apiserver.service", APIServer{Version: "v1.37.1", IP: "10.77.0.11",
		EtcdServers: "https://10.77.0.11:2379", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local", CipherSuites: CipherSuites,
		Audit: true, AuditMaxAge: 30, AuditMaxBackup: 10, AuditMaxSize: 100, EncryptSecrets: true}))
}

func TestAdmissionAndAuditPolicy(t *testing.T) {
	golden.Assert(t, render(t, "admission.yaml", Admission{Enforce: "baseline", Audit: "restricted", Warn: "restricted",
		ExemptNamespaces: []string{"kube-system", "monitoring"}}))
	policy := string(render(t, "audit-policy.yaml", nil))
	// Metadata is the most any request is logged at: bodies (Secrets, tokens) never reach the log
	if strings.Contains(policy, "level: Request") || !strings.Contains(policy, "- level: Metadata\n") {
		t.Errorf("audit policy:\n%s", policy)
	}
}

func TestControllerManagerService(t *testing.T) {
	golden.Assert(t, render(t, "kube-controller-manager.service", ControllerManager{Version: "v1.37.1", ClusterName: "lab",
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", NodeCIDRMaskSize: 24}))
}

func TestSchedulerService(t *testing.T) {
	golden.Assert(t, render(t, "kube-scheduler.service", ControllerManager{Version: "v1.37.1"}))
}

var labNode = Node{Version: "v1.37.1", Name: "h2", IP: "10.77.0.12", APIServer: "https://127.0.0.1:6444", APILoadBalancer: true, CgroupDriver: "cgroupfs", FailCgroupV1: false,
	ClusterDNS: "10.96.0.10", DNSDomain: "cluster.local", MaxPods: 110, PodPidsLimit: 4096, CipherSuites: CipherSuites, ResolvConf: "/run/systemd/resolve/resolv.conf", Labels: "topology.kubernetes.io/zone=a",
	Taints: "dedicated=infra:NoSchedule", PodCIDR: "10.244.1.0/24", ClusterCIDR: "10.244.0.0/16", IPTables: "iptables", Mode: "iptables",
	EvictionHard: []Setting{{Key: "imagefs.available", Value: "1%"}, {Key: "memory.available", Value: "100Mi"}},
	Routes:       []Route{{CIDR: "10.244.0.0/24", Via: "10.77.0.11"}, {CIDR: "10.244.2.0/24", Via: "10.77.0.13"}}}

func TestNodeFiles(t *testing.T) {
	for _, name := range []string{"kubelet-config.yaml", "kubelet.service", "kube-proxy-config.yaml", "kube-proxy.service", "bridge.conflist", "pod-routes.service", "sysctl.conf", "modules.conf"} {
		t.Run(name, func(t *testing.T) { golden.Assert(t, render(t, name, labNode)) })
	}
}

func TestAPILoadBalancerFiles(t *testing.T) {
	lb := APILoadBalancer{Name: "h2", Listen: "127.0.0.1:6444", Health: "127.0.0.1:6445", Backends: []string{"10.77.0.11:6443", "10.77.0.14:6443"}}
	for _, name := range []string{"privcloud-api-lb.service", "privcloud-api-lb.socket", "api-lb.yaml"} {
		t.Run(name, func(t *testing.T) { golden.Assert(t, render(t, name, lb)) })
	}
}

func TestKubeRouterService(t *testing.T) {
	golden.Assert(t, render(t, "privcloud-kube-router.service", KubeRouter{Name: "h2", ServiceCIDR: "10.96.0.0/12", HealthPort: 20244}))
}

func TestFlannelFiles(t *testing.T) {
	for name, f := range map[string]Flannel{
		"ipv4": {Name: "h2", IP: "10.77.0.12", HealthPort: 20245, Network: "10.244.0.0/16", VXLANPort: 8472},
		"ipv6": {Name: "h2", IP: "fd00::12", HealthPort: 20245, Network: "fd10::/56", IPv6: true, VXLANPort: 8472},
	} {
		for _, file := range []string{"privcloud-flannel.service", "flannel-net-conf.json", "flannel.conflist"} {
			t.Run(name+"/"+file, func(t *testing.T) { golden.Assert(t, render(t, file, f)) })
		}
	}
}

func TestRegistryHosts(t *testing.T) {
	golden.Assert(t, render(t, "containerd-hosts.toml", RegistryHosts{Server: "https://quay.lab.example",
		Hosts: []RegistryHost{{URL: "https://127.0.0.1:30443", CA: "/etc/kubernetes/pki/ca.crt"}, {URL: "http://10.77.0.1:5000"}}}))
}
