package v1alpha1

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Static defaults. They are documented in `privcloud config print-defaults`, whose golden file shows them all.
const (
	DefaultKubernetesVersion = "v1.37.2"
	DefaultStateDir          = ".privcloud"
	DefaultSSHPort           = 22
	DefaultSSHUser           = "root"
	DefaultSSHKeyPath        = "~/.ssh/id_ed25519"
	DefaultKnownHostsFile    = "~/.ssh/known_hosts"
	DefaultConcurrency       = 50
	DefaultAPIServerPort     = 6443
	// DefaultAPILoadBalancerPort is RKE2's agent load balancer port; its health endpoint takes the next one
	DefaultAPILoadBalancerPort = 6444
	DefaultPodCIDR             = "10.244.0.0/16"
	DefaultServiceCIDR         = "10.96.0.0/12"
	DefaultDNSDomain           = "cluster.local"
	// NetworkFlannel is flannel's VXLAN overlay, the default: it works across routed subnets
	NetworkFlannel = "flannel"
	// NetworkBridge is the bridge CNI plugin with routes between nodes: one layer-2 segment only
	NetworkBridge        = "bridge"
	DefaultNetworkPlugin = NetworkFlannel
	// NetworkPolicyKubeRouter is NetworkPolicy enforced by kube-router's firewall controller, the default
	NetworkPolicyKubeRouter = "kube-router"
	DefaultNodeCIDRMaskSize = 24
	DefaultEtcdDataDir      = "/var/lib/etcd"
	DefaultRuntime          = "runc"
	DefaultKataName         = "kata"
	DefaultKataOverheadCPU  = "250m"
	DefaultKataOverheadMem  = "160Mi"
	DefaultCgroupDriver     = "systemd"
	DefaultMaxPods          = 110
	DefaultKubeProxyMode    = "iptables"
	DefaultConntrackPerCore = 32768
	DefaultCoreDNSReplicas  = 2
	DefaultQuayHostPathDir  = "/var/lib/privcloud/quay"
	// DefaultMonitoringRetention is Prometheus's own default.
	DefaultMonitoringRetention   = "15d"
	DefaultMonitoringStorageSize = "20Gi"
	// DefaultMetricsPort is where each host's metrics endpoint (privcloud-metrics) listens on its address.
	DefaultMetricsPort  = 10290
	DefaultBundlePath   = "privcloud-bundle.tar.zst"
	DefaultKeyAlgorithm = "ecdsa-p256"

	defaultConnectTimeout    = 15 * time.Second
	defaultCommandTimeout    = 10 * time.Minute
	defaultKeepAliveInterval = 15 * time.Second
	defaultCertValidity      = 365 * 24 * time.Hour
	defaultRenewBefore       = 90 * 24 * time.Hour
	defaultCAValidity        = 10 * 365 * 24 * time.Hour
)

// SetDefaults fills every unset field. It is pure: it reads nothing but c, so the same input always gives the
// same output. Values that depend on other fields (the cluster DNS IP, the control-plane endpoint) are derived
// here too, but only when the fields they derive from are valid; validation reports the rest.
func SetDefaults(c *Cluster) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = KindCluster
	}
	s := &c.Spec
	setString(&s.KubernetesVersion, DefaultKubernetesVersion)
	setString(&s.StateDir, DefaultStateDir)

	defaultEtcdRole(s)
	for i := range s.Hosts {
		defaultHost(&s.Hosts[i])
	}
	defaultSSH(&s.SSH)
	defaultNetwork(&s.Network)
	if s.ControlPlaneEndpoint == "" {
		if cps := s.HostsWithRole(RoleControlPlane); len(cps) > 0 && cps[0].Address != "" {
			s.ControlPlaneEndpoint = net.JoinHostPort(cps[0].Address, strconv.Itoa(DefaultAPIServerPort))
		}
	}
	defaultAPIServer(&s.APIServer)
	setBool(&s.APILoadBalancer.Enabled, true)
	setInt(&s.APILoadBalancer.Port, DefaultAPILoadBalancerPort)
	setString(&s.Etcd.DataDir, DefaultEtcdDataDir)
	defaultContainerd(&s.Containerd)
	setString(&s.Kubelet.CgroupDriver, DefaultCgroupDriver)
	setBool(&s.Kubelet.FailCgroupV1, true)
	setInt(&s.Kubelet.MaxPods, DefaultMaxPods)
	setInt(&s.Kubelet.PodPidsLimit, DefaultPodPidsLimit)
	setString(&s.KubeProxy.Mode, DefaultKubeProxyMode)
	if s.KubeProxy.Conntrack.MaxPerCore == nil {
		v := int32(DefaultConntrackPerCore)
		s.KubeProxy.Conntrack.MaxPerCore = &v
	}
	defaultAddons(&s.Addons)
	setString(&s.Bundle.Path, DefaultBundlePath)
	setString(&s.PKI.KeyAlgorithm, DefaultKeyAlgorithm)
	setDuration(&s.PKI.CertValidity, defaultCertValidity)
	setDuration(&s.PKI.RenewBefore, defaultRenewBefore)
	setDuration(&s.PKI.CAValidity, defaultCAValidity)
}

// DefaultPodPidsLimit bounds the processes of one pod.
const DefaultPodPidsLimit = 4096

// defaultAPIServer hardens by default: audit on, Secrets encrypted, pods at least baseline, restricted
// violations warned about and audited; kube-system, whose components need host access, exempt.
func defaultAPIServer(a *APIServer) {
	setBool(&a.Audit.Enabled, true)
	setInt(&a.Audit.MaxAge, 30)
	setInt(&a.Audit.MaxBackup, 10)
	setInt(&a.Audit.MaxSize, 100)
	setBool(&a.EncryptSecrets, true)
	setString(&a.PodSecurity.Enforce, "baseline")
	setString(&a.PodSecurity.Audit, "restricted")
	setString(&a.PodSecurity.Warn, "restricted")
	if a.PodSecurity.ExemptNamespaces == nil {
		a.PodSecurity.ExemptNamespaces = []string{"kube-system"}
	}
}

// defaultEtcdRole makes every control-plane host an etcd member when no host names the etcd role (stacked
// etcd, as kubeadm does).
func defaultEtcdRole(s *ClusterSpec) {
	if len(s.HostsWithRole(RoleEtcd)) > 0 {
		return
	}
	for i := range s.Hosts {
		if s.Hosts[i].HasRole(RoleControlPlane) {
			s.Hosts[i].Roles = append(s.Hosts[i].Roles, RoleEtcd)
		}
	}
}

func defaultHost(h *Host) {
	setInt(&h.Port, DefaultSSHPort)
	setString(&h.User, DefaultSSHUser)
	setString(&h.SSHKeyPath, DefaultSSHKeyPath)
	if h.InternalAddress == "" {
		if _, err := netip.ParseAddr(h.Address); err == nil {
			h.InternalAddress = h.Address
		}
	}
	for i := range h.Bastions {
		b := &h.Bastions[i]
		setInt(&b.Port, DefaultSSHPort)
		setString(&b.User, h.User)
		setString(&b.SSHKeyPath, h.SSHKeyPath)
	}
}

func defaultSSH(s *SSH) {
	if len(s.KnownHostsFiles) == 0 {
		s.KnownHostsFiles = []string{DefaultKnownHostsFile}
	}
	setInt(&s.Concurrency, DefaultConcurrency)
	setDuration(&s.ConnectTimeout, defaultConnectTimeout)
	setDuration(&s.CommandTimeout, defaultCommandTimeout)
	setDuration(&s.KeepAliveInterval, defaultKeepAliveInterval)
}

func defaultNetwork(n *Network) {
	setString(&n.PodCIDR, DefaultPodCIDR)
	setString(&n.ServiceCIDR, DefaultServiceCIDR)
	setString(&n.DNSDomain, DefaultDNSDomain)
	setString(&n.Plugin, DefaultNetworkPlugin)
	setString(&n.Policy, NetworkPolicyKubeRouter)
	setInt(&n.NodeCIDRMaskSize, DefaultNodeCIDRMaskSize)
	if n.ClusterDNS == "" {
		if p, err := netip.ParsePrefix(n.ServiceCIDR); err == nil {
			if ip, ok := NthAddress(p, 10); ok {
				n.ClusterDNS = ip.String()
			}
		}
	}
}

func defaultContainerd(c *Containerd) {
	setString(&c.DefaultRuntime, DefaultRuntime)
	setString(&c.Kata.RuntimeClassName, DefaultKataName)
	setString(&c.Kata.Handler, DefaultKataName)
	setString(&c.Kata.OverheadCPU, DefaultKataOverheadCPU)
	setString(&c.Kata.OverheadMemory, DefaultKataOverheadMem)
}

func defaultAddons(a *Addons) {
	setBool(&a.CoreDNS.Enabled, true)
	setInt(&a.CoreDNS.Replicas, DefaultCoreDNSReplicas)
	setBool(&a.Multus.Enabled, true)
	for i := range a.Multus.Networks {
		n := &a.Multus.Networks[i]
		setString(&n.Namespace, "default")
		setString(&n.IPAM, "host-local")
	}
	setString(&a.Quay.HostPathDir, DefaultQuayHostPathDir)
	setString(&a.Monitoring.Retention, DefaultMonitoringRetention)
	setString(&a.Monitoring.StorageSize, DefaultMonitoringStorageSize)
}

// NthAddress returns the n-th address of prefix p (0 is the network address), or false when p is too small.
func NthAddress(p netip.Prefix, n uint64) (netip.Addr, bool) {
	p = p.Masked()
	ip := p.Addr()
	for range n {
		ip = ip.Next()
		if !ip.IsValid() || !p.Contains(ip) {
			return netip.Addr{}, false
		}
	}
	return ip, true
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setBool(p **bool, v bool) {
	if *p == nil {
		*p = &v
	}
}

func setDuration(p *Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}
