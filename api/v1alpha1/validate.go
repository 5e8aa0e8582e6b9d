package v1alpha1

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FieldError is one problem with one field of a cluster.yaml.
type FieldError struct {
	Path string // e.g. spec.hosts[2].address
	Line int    // line in the file, 0 when unknown
	Msg  string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// ValidationError carries every problem found in one document.
type ValidationError struct {
	File   string
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	where := e.File
	if where == "" {
		where = "cluster configuration"
	}
	fmt.Fprintf(&b, "%s: %d error(s):", where, len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  - ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Paths lists the field paths of every error, in order; tests and scripts match on them.
func (e *ValidationError) Paths() []string {
	out := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		out[i] = fe.Path
	}
	return out
}

// MinKubernetesMinor is the oldest Kubernetes minor version privcloud installs (1.x).
const MinKubernetesMinor = 33

var (
	versionRE    = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)
	dnsLabelRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelNameRE  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	unixUserRE   = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*\$?$`)
	interfaceRE  = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	taintEffects = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

// Validate checks a defaulted cluster and returns every problem at once, or nil.
func Validate(c *Cluster) *ValidationError {
	v := &validator{}
	if c.APIVersion != APIVersion {
		v.add("apiVersion", "must be %q, got %q", APIVersion, c.APIVersion)
	}
	if c.Kind != KindCluster {
		v.add("kind", "must be %q, got %q", KindCluster, c.Kind)
	}
	if !isDNSLabel(c.Metadata.Name) {
		v.add("metadata.name", "%q is not a DNS label (lowercase letters, digits and '-', at most 63)", c.Metadata.Name)
	}
	s := &c.Spec
	v.version("spec.kubernetesVersion", s.KubernetesVersion)
	if s.StateDir == "" {
		v.add("spec.stateDir", "must not be empty")
	}
	v.hosts(s)
	v.endpoint(s.ControlPlaneEndpoint)
	v.ssh(&s.SSH)
	v.network(s)
	v.apiServer(&s.APIServer)
	v.componentExtraArgs(s)
	v.apiLoadBalancer(&s.APILoadBalancer)
	v.etcd(&s.Etcd)
	v.containerd(&s.Containerd)
	v.kubelet(&s.Kubelet, &s.KubeProxy)
	v.addons(&s.Addons, s)
	if s.Bundle.Path == "" {
		v.add("spec.bundle.path", "must not be empty")
	}
	v.bundlePublicKeys(s.Bundle.PublicKeys)
	v.pki(&s.PKI)
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

type validator struct{ errs []FieldError }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) version(path, s string) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		v.add(path, "%q is not a version of the form vMAJOR.MINOR.PATCH, e.g. %s", s, DefaultKubernetesVersion)
		return
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major != 1 || minor < MinKubernetesMinor {
		v.add(path, "%s is not supported: privcloud installs Kubernetes v1.%d and later", s, MinKubernetesMinor)
	}
}

func (v *validator) hosts(s *ClusterSpec) {
	if len(s.Hosts) == 0 {
		v.add("spec.hosts", "at least one host is required")
		return
	}
	names := map[string]int{}
	endpoints := map[string]int{}
	internal := map[string]int{}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		p := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case h.Name == "":
			v.add(p+".name", "must not be empty")
		case !isDNSSubdomain(h.Name):
			v.add(p+".name", "%q is not a valid node name (lowercase DNS-1123 subdomain)", h.Name)
		default:
			if j, dup := names[h.Name]; dup {
				v.add(p+".name", "%q is also the name of spec.hosts[%d]", h.Name, j)
			} else {
				names[h.Name] = i
			}
		}
		if v.address(p+".address", h.Address) {
			ep := net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
			if j, dup := endpoints[ep]; dup {
				v.add(p+".address", "%s is also the SSH address of spec.hosts[%d]", ep, j)
			} else {
				endpoints[ep] = i
			}
		}
		if h.InternalAddress != "" {
			if ip, err := netip.ParseAddr(h.InternalAddress); err != nil {
				v.add(p+".internalAddress", "%q is not an IP address", h.InternalAddress)
			} else if j, dup := internal[ip.String()]; dup {
				// one machine listed twice (say, on two SSH ports): its services would collide
				v.add(p+".internalAddress", "%s is also the internal address of spec.hosts[%d] (%s): two hosts cannot be one machine; behind one NAT address, give each its own internalAddress",
					ip, j, s.Hosts[j].Name)
			} else {
				internal[ip.String()] = i
			}
		} else if h.HasRole(RoleControlPlane) || h.HasRole(RoleEtcd) || h.HasRole(RoleWorker) {
			v.add(p+".internalAddress", "required when address %q is a DNS name: cluster traffic needs an IP", h.Address)
		}
		v.port(p+".port", h.Port)
		if !unixUserRE.MatchString(h.User) {
			v.add(p+".user", "%q is not a valid user name", h.User)
		}
		v.hostKey(p+".hostKey", h.HostKey)
		for j, b := range h.Bastions {
			bp := fmt.Sprintf("%s.bastions[%d]", p, j)
			v.address(bp+".address", b.Address)
			v.port(bp+".port", b.Port)
			if !unixUserRE.MatchString(b.User) {
				v.add(bp+".user", "%q is not a valid user name", b.User)
			}
			v.hostKey(bp+".hostKey", b.HostKey)
		}
		v.roles(p+".roles", h.Roles)
		v.labels(p+".labels", h.Labels)
		for j, t := range h.Taints {
			tp := fmt.Sprintf("%s.taints[%d]", p, j)
			if !isQualifiedName(t.Key) {
				v.add(tp+".key", "%q is not a qualified name (optional DNS prefix '/', then a name of at most 63 characters)", t.Key)
			}
			if t.Value != "" && !isLabelValue(t.Value) {
				v.add(tp+".value", "%q is not a valid taint value", t.Value)
			}
			if !contains(taintEffects, t.Effect) {
				v.add(tp+".effect", "%q is not one of %s", t.Effect, strings.Join(taintEffects, ", "))
			}
			for k, u := range h.Taints[:j] {
				if u.Key == t.Key && u.Effect == t.Effect {
					v.add(tp, "taint %s:%s is already taints[%d]: a node holds one taint of a key and effect", t.Key, t.Effect, k)
				}
			}
		}
	}
	if len(s.HostsWithRole(RoleControlPlane)) == 0 {
		v.add("spec.hosts", "no host has the control-plane role")
	}
	if n := len(s.HostsWithRole(RoleEtcd)); n%2 == 0 && n > 0 {
		v.add("spec.hosts", "%d hosts have the etcd role: etcd needs an odd number of members (1, 3, 5) to keep quorum", n)
	}
}

func (v *validator) address(path, a string) bool {
	if a == "" {
		v.add(path, "must not be empty")
		return false
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return true
	}
	if looksNumeric(a) || !isDNSSubdomain(strings.ToLower(a)) {
		v.add(path, "%q is neither an IP address nor a DNS name", a)
		return false
	}
	return true
}

func (v *validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		v.add(path, "%d is not a port (1-65535)", p)
	}
}

// apiLoadBalancer checks the load balancer's ports: neither may be one a node's own services listen on.
func (v *validator) apiLoadBalancer(l *APILoadBalancer) {
	const path = "spec.apiLoadBalancer.port"
	if l.Port < 1024 || l.Port > 65534 {
		v.add(path, "%d is not a port from 1024 to 65534 (the health endpoint takes the next one)", l.Port)
		return
	}
	// etcd, the API server, the kubelet, kube-proxy, the controller-manager, the scheduler, the NetworkPolicy
	// firewall's health
	for _, taken := range []int{2379, 2380, 2381, DefaultAPIServerPort, 10248, 10249, 10250, 10256, 10257, 10259, 20244} {
		if l.Port == taken || l.Port+1 == taken {
			v.add(path, "%d: port %d is used by a node's own services (the load balancer takes %d and %d)", l.Port, taken, l.Port, l.Port+1)
		}
	}
}

func (v *validator) hostKey(path, key string) {
	if key == "" {
		return
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key)); err != nil {
		v.add(path, "not a public key in authorized_keys format (e.g. \"ssh-ed25519 AAAA...\"): %v", err)
	}
}

func (v *validator) roles(path string, roles []Role) {
	if len(roles) == 0 {
		v.add(path, "at least one role is required: %s", joinRoles(Roles))
		return
	}
	seen := map[Role]bool{}
	for j, r := range roles {
		rp := fmt.Sprintf("%s[%d]", path, j)
		switch {
		case !isKnownRole(r):
			v.add(rp, "unknown role %q: use %s", r, joinRoles(Roles))
		case seen[r]:
			v.add(rp, "role %q is listed twice", r)
		}
		seen[r] = true
	}
}

func (v *validator) labels(path string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if !isQualifiedName(k) {
			v.add(path+"."+k, "%q is not a valid label key", k)
		}
		if val := labels[k]; val != "" && !isLabelValue(val) {
			v.add(path+"."+k, "%q is not a valid label value (at most 63 letters, digits, '-', '_', '.')", val)
		}
	}
}

func (v *validator) endpoint(ep string) {
	const path = "spec.controlPlaneEndpoint"
	if ep == "" {
		return // no control-plane host: reported on spec.hosts
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		v.add(path, "%q is not host:port: %v", ep, err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(path, "%q has an invalid port", ep)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isDNSSubdomain(strings.ToLower(host)) {
		v.add(path, "%q: host %q is neither an IP address nor a DNS name", ep, host)
	}
}

func (v *validator) ssh(s *SSH) {
	for i, f := range s.KnownHostsFiles {
		if strings.TrimSpace(f) == "" {
			v.add(fmt.Sprintf("spec.ssh.knownHostsFiles[%d]", i), "must not be empty")
		}
	}
	if s.Concurrency < 1 {
		v.add("spec.ssh.concurrency", "must be at least 1, got %d", s.Concurrency)
	}
	v.positive("spec.ssh.connectTimeout", s.ConnectTimeout)
	v.positive("spec.ssh.commandTimeout", s.CommandTimeout)
	v.positive("spec.ssh.keepAliveInterval", s.KeepAliveInterval)
	if s.Sudo.PasswordEnv != "" && !envNameRE.MatchString(s.Sudo.PasswordEnv) {
		v.add("spec.ssh.sudo.passwordEnv", "%q is not an environment variable name", s.Sudo.PasswordEnv)
	}
	if s.PasswordEnv != "" && !envNameRE.MatchString(s.PasswordEnv) {
		v.add("spec.ssh.passwordEnv", "%q is not an environment variable name", s.PasswordEnv)
	}
}

func (v *validator) positive(path string, d Duration) bool {
	if d.Duration <= 0 {
		v.add(path, "must be positive, got %s", d.Duration)
		return false
	}
	return true
}

func (v *validator) network(s *ClusterSpec) {
	n := &s.Network
	pod := v.cidr("spec.network.podCIDR", n.PodCIDR)
	svc := v.cidr("spec.network.serviceCIDR", n.ServiceCIDR)
	if svc.IsValid() {
		maxHostBits := 20
		if svc.Addr().Is4() && 32-svc.Bits() > maxHostBits {
			v.add("spec.network.serviceCIDR", "%s is too large: the API server accepts at most /%d for IPv4", n.ServiceCIDR, 32-maxHostBits)
		}
		if svc.Addr().Is6() && 128-svc.Bits() > maxHostBits {
			v.add("spec.network.serviceCIDR", "%s is too large: the API server accepts at most /%d for IPv6", n.ServiceCIDR, 128-maxHostBits)
		}
	}
	if pod.IsValid() && svc.IsValid() && pod.Overlaps(svc) {
		v.add("spec.network.serviceCIDR", "%s overlaps podCIDR %s", n.ServiceCIDR, n.PodCIDR)
	}
	for i, h := range s.Hosts {
		ip, err := netip.ParseAddr(h.InternalAddress)
		if err != nil {
			continue
		}
		if pod.IsValid() && pod.Contains(ip) {
			v.add("spec.network.podCIDR", "%s contains the address %s of spec.hosts[%d] (%s)", n.PodCIDR, ip, i, h.Name)
		}
		if svc.IsValid() && svc.Contains(ip) {
			v.add("spec.network.serviceCIDR", "%s contains the address %s of spec.hosts[%d] (%s)", n.ServiceCIDR, ip, i, h.Name)
		}
	}
	if dns, err := netip.ParseAddr(n.ClusterDNS); err != nil {
		v.add("spec.network.clusterDNS", "%q is not an IP address", n.ClusterDNS)
	} else if svc.IsValid() {
		first, _ := NthAddress(svc, 1)
		switch {
		case !svc.Contains(dns):
			v.add("spec.network.clusterDNS", "%s is outside serviceCIDR %s", dns, n.ServiceCIDR)
		case dns == svc.Masked().Addr():
			v.add("spec.network.clusterDNS", "%s is the network address of serviceCIDR", dns)
		case dns == first:
			v.add("spec.network.clusterDNS", "%s is taken by the kubernetes Service (first address of serviceCIDR)", dns)
		}
	}
	if !isDNSSubdomain(n.DNSDomain) {
		v.add("spec.network.dnsDomain", "%q is not a DNS domain", n.DNSDomain)
	}
	if n.Plugin != NetworkFlannel && n.Plugin != NetworkBridge {
		v.add("spec.network.plugin", "unknown pod network %q: use flannel (an overlay that crosses subnets) or bridge (one layer-2 segment)", n.Plugin)
	}
	switch {
	case n.Policy != NetworkPolicyKubeRouter && n.Policy != "none":
		v.add("spec.network.policy", "unknown NetworkPolicy enforcement %q: use kube-router or none", n.Policy)
	case n.PolicyEnforced() && s.KubeProxy.Mode == "ipvs":
		// kube-router v2.1 saves and restores every ipset of the host, kube-proxy's among them
		v.add("spec.network.policy", "kube-router would revert the ipsets kube-proxy keeps in ipvs mode: set spec.kubeProxy.mode to iptables or nftables, or spec.network.policy to none")
	}
	if pod.IsValid() {
		addrBits := pod.Addr().BitLen()
		switch m := n.NodeCIDRMaskSize; {
		case m <= pod.Bits() || m > addrBits-2:
			v.add("spec.network.nodeCIDRMaskSize", "%d must be longer than podCIDR's /%d and at most /%d", m, pod.Bits(), addrBits-2)
		case m-pod.Bits() > 16:
			v.add("spec.network.nodeCIDRMaskSize", "%d splits podCIDR /%d into more than 65536 node ranges", m, pod.Bits())
		}
	}
}

func (v *validator) cidr(path, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		v.add(path, "%q is not a CIDR (e.g. 10.244.0.0/16)", s)
		return netip.Prefix{}
	}
	if p != p.Masked() {
		v.add(path, "%q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p
}

func (v *validator) etcd(e *Etcd) {
	v.hostDataDir("spec.etcd.dataDir", e.DataDir)
	v.etcdExtraArgs(e)
}

func (v *validator) containerd(c *Containerd) {
	allowed := []string{DefaultRuntime}
	if c.Kata.Enabled {
		allowed = append(allowed, c.Kata.Handler)
		if !isDNSLabel(c.Kata.Handler) {
			v.add("spec.containerd.kata.handler", "%q is not a DNS label", c.Kata.Handler)
		}
		if !isDNSSubdomain(c.Kata.RuntimeClassName) {
			v.add("spec.containerd.kata.runtimeClassName", "%q is not a valid RuntimeClass name", c.Kata.RuntimeClassName)
		}
		v.quantity("spec.containerd.kata.overheadCPU", c.Kata.OverheadCPU)
		v.quantity("spec.containerd.kata.overheadMemory", c.Kata.OverheadMemory)
	}
	if !contains(allowed, c.DefaultRuntime) {
		v.add("spec.containerd.defaultRuntime", "%q is not an available runtime (%s); kata needs containerd.kata.enabled", c.DefaultRuntime, strings.Join(allowed, ", "))
	}
	seen := map[string]bool{}
	for i, m := range c.RegistryMirrors {
		p := fmt.Sprintf("spec.containerd.registryMirrors[%d]", i)
		host, _, err := net.SplitHostPort(m.Registry)
		if err != nil {
			host = m.Registry
		}
		switch {
		case m.Registry == "":
			v.add(p+".registry", "must not be empty")
		case !isDNSSubdomain(strings.ToLower(host)) && !isIP(host):
			v.add(p+".registry", "%q is not a registry host[:port]", m.Registry)
		case seen[m.Registry]:
			v.add(p+".registry", "%q has mirrors declared twice", m.Registry)
		}
		seen[m.Registry] = true
		if len(m.Endpoints) == 0 {
			v.add(p+".endpoints", "at least one mirror URL is required")
		}
		for j, ep := range m.Endpoints {
			if u, err := url.Parse(ep); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				v.add(fmt.Sprintf("%s.endpoints[%d]", p, j), "%q is not an http:// or https:// URL", ep)
			}
		}
	}
}

var quantityRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`)

func (v *validator) quantity(path, q string) {
	if !quantityRE.MatchString(q) {
		v.add(path, "%q is not a Kubernetes quantity (e.g. 250m, 160Mi)", q)
	}
}

// evictionSignals are the kubelet's hard eviction signals.
var evictionSignals = []string{"memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree",
	"containerfs.available", "containerfs.inodesFree", "pid.available"}

func (v *validator) kubelet(k *Kubelet, kp *KubeProxy) {
	if k.CgroupDriver != "systemd" && k.CgroupDriver != "cgroupfs" {
		v.add("spec.kubelet.cgroupDriver", "%q is not systemd or cgroupfs", k.CgroupDriver)
	}
	if k.PodPidsLimit < 1 {
		v.add("spec.kubelet.podPidsLimit", "must be at least 1, got %d", k.PodPidsLimit)
	}
	if k.MaxPods < 1 {
		v.add("spec.kubelet.maxPods", "must be at least 1, got %d", k.MaxPods)
	}
	for _, signal := range sortedKeys(k.EvictionHard) {
		path, value := "spec.kubelet.evictionHard."+signal, k.EvictionHard[signal]
		if !contains(evictionSignals, signal) {
			v.add(path, "%q is not an eviction signal (%s)", signal, strings.Join(evictionSignals, ", "))
		}
		if pct, ok := strings.CutSuffix(value, "%"); ok {
			if n, err := strconv.ParseFloat(pct, 64); err != nil || n < 0 || n > 100 {
				v.add(path, "%q is not a percentage between 0%% and 100%%", value)
			}
			continue
		}
		v.quantity(path, value)
	}
	if !contains([]string{"iptables", "ipvs", "nftables"}, kp.Mode) {
		v.add("spec.kubeProxy.mode", "%q is not iptables, ipvs or nftables", kp.Mode)
	}
	if m := kp.Conntrack.MaxPerCore; m != nil && *m < 0 {
		v.add("spec.kubeProxy.conntrack.maxPerCore", "must not be negative, got %d", *m)
	}
}

func (v *validator) addons(a *Addons, s *ClusterSpec) {
	if a.CoreDNS.Replicas < 1 {
		v.add("spec.addons.coredns.replicas", "must be at least 1, got %d", a.CoreDNS.Replicas)
	}
	for i, u := range a.CoreDNS.Upstreams {
		host, _, err := net.SplitHostPort(u)
		if err != nil {
			host = u
		}
		if !isIP(host) {
			v.add(fmt.Sprintf("spec.addons.coredns.upstreams[%d]", i), "%q is not an IP or IP:port", u)
		}
	}
	names := map[string]bool{}
	for i, n := range a.Multus.Networks {
		p := fmt.Sprintf("spec.addons.multus.networks[%d]", i)
		if !isDNSLabel(n.Name) {
			v.add(p+".name", "%q is not a DNS label", n.Name)
		} else if names[n.Namespace+"/"+n.Name] {
			v.add(p+".name", "%q is declared twice in namespace %s", n.Name, n.Namespace)
		}
		names[n.Namespace+"/"+n.Name] = true
		if !isDNSLabel(n.Namespace) {
			v.add(p+".namespace", "%q is not a namespace name", n.Namespace)
		}
		switch n.Type {
		case "macvlan":
			if !interfaceRE.MatchString(n.Master) {
				v.add(p+".master", "macvlan needs the host interface to attach to (e.g. eth0)")
			}
		case "bridge":
			if n.Bridge != "" && !interfaceRE.MatchString(n.Bridge) {
				v.add(p+".bridge", "%q is not an interface name", n.Bridge)
			}
		default:
			v.add(p+".type", "%q is not macvlan or bridge", n.Type)
		}
		switch n.IPAM {
		case "host-local":
			if _, err := netip.ParsePrefix(n.Subnet); err != nil {
				v.add(p+".subnet", "%q is not a CIDR: host-local IPAM needs a subnet", n.Subnet)
			}
		case "static":
			if len(n.Addresses) == 0 {
				v.add(p+".addresses", "static IPAM needs at least one address")
			}
			for j, addr := range n.Addresses {
				if _, err := netip.ParsePrefix(addr); err != nil {
					v.add(fmt.Sprintf("%s.addresses[%d]", p, j), "%q is not an address in CIDR notation (e.g. 192.168.50.10/24)", addr)
				}
			}
		default:
			v.add(p+".ipam", "%q is not host-local or static", n.IPAM)
		}
	}
	if a.Quay.Enabled && !isDNSSubdomain(a.Quay.Hostname) {
		v.add("spec.addons.quay.hostname", "%q is not a DNS name: Quay's TLS certificate and clients need one", a.Quay.Hostname)
	}
	if a.Quay.StorageClass == "" {
		v.hostDataDir("spec.addons.quay.hostPathDir", a.Quay.HostPathDir)
	}
	if a.Quay.UseAsMirror && !a.Quay.Enabled {
		v.add("spec.addons.quay.useAsMirror", "needs quay.enabled")
	}
	if !promDuration.MatchString(a.Monitoring.Retention) {
		v.add("spec.addons.monitoring.retention", "%q is not a Prometheus duration (a number and one of ms, s, m, h, d, w, y: 15d)", a.Monitoring.Retention)
	}
	if a.Monitoring.StorageClass != "" {
		if !isDNSSubdomain(a.Monitoring.StorageClass) {
			v.add("spec.addons.monitoring.storageClass", "%q is not a StorageClass name", a.Monitoring.StorageClass)
		}
		if _, err := resource.ParseQuantity(a.Monitoring.StorageSize); err != nil {
			v.add("spec.addons.monitoring.storageSize", "%q is not a quantity (20Gi)", a.Monitoring.StorageSize)
		}
	}
}

// promDuration is what Prometheus takes for a duration: one or more number-unit pairs, largest unit first.
var promDuration = regexp.MustCompile(`^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$`)

func (v *validator) pki(p *PKI) {
	if !contains([]string{"ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"}, p.KeyAlgorithm) {
		v.add("spec.pki.keyAlgorithm", "%q is not ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096", p.KeyAlgorithm)
	}
	certOK := v.positive("spec.pki.certValidity", p.CertValidity)
	if v.positive("spec.pki.renewBefore", p.RenewBefore) && certOK && p.RenewBefore.Duration >= p.CertValidity.Duration {
		v.add("spec.pki.renewBefore", "%s is not shorter than certValidity (%s): every run would renew every certificate", p.RenewBefore, p.CertValidity)
	}
	if v.positive("spec.pki.caValidity", p.CAValidity) && certOK && p.CertValidity.Duration > p.CAValidity.Duration {
		v.add("spec.pki.certValidity", "%s outlives the CA (caValidity %s)", p.CertValidity.Duration, p.CAValidity.Duration)
	}
	for i, san := range p.ExtraSANs {
		if !isIP(san) && !isDNSSubdomain(strings.ToLower(strings.TrimPrefix(san, "*."))) {
			v.add(fmt.Sprintf("spec.pki.extraSANs[%d]", i), "%q is neither an IP address nor a DNS name", san)
		}
	}
}

func isDNSLabel(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNSLabel(l) {
			return false
		}
	}
	return true
}

// isQualifiedName is Kubernetes' label-key rule: an optional DNS subdomain prefix, '/', a name.
func isQualifiedName(s string) bool {
	name := s
	if i := strings.LastIndex(s, "/"); i >= 0 {
		if !isDNSSubdomain(s[:i]) {
			return false
		}
		name = s[i+1:]
	}
	return len(name) <= 63 && labelNameRE.MatchString(name)
}

func isLabelValue(s string) bool { return len(s) <= 63 && labelNameRE.MatchString(s) }

func isIP(s string) bool { _, err := netip.ParseAddr(s); return err == nil }

// looksNumeric catches malformed IPs such as 10.77.0.300 that would otherwise pass as DNS names.
func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

func isKnownRole(r Role) bool {
	for _, k := range Roles {
		if r == k {
			return true
		}
	}
	return false
}

func joinRoles(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// bundlePublicKeys refuses empty entries of spec.bundle.publicKeys, which name no key file.
func (v *validator) bundlePublicKeys(keys []string) {
	for i, k := range keys {
		if k == "" {
			v.add(fmt.Sprintf("spec.bundle.publicKeys[%d]", i), "must not be empty: the path of a public key written by 'privcloud bundle keygen'")
		}
	}
}
