package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// CA names: the signing authorities of the tree.
const (
	ClusterCA    = "ca"
	FrontProxyCA = "front-proxy-ca"
	EtcdCA       = "etcd/ca"
)

// AdminGroup is the group of the admin kubeconfig; the cluster binds it to cluster-admin, so the credential
// can be taken away by removing the binding, unlike system:masters.
const AdminGroup = "privcloud:cluster-admins"

// Cert is one certificate of the tree. CAs have an empty CA field.
type Cert struct {
	Name         string // path in the store without extension: "apiserver/cp1", "etcd/server-cp1"
	CA           string
	CommonName   string
	Organization []string
	Usages       []x509.ExtKeyUsage
	DNSNames     []string
	IPs          []net.IP
}

// Kubeconfig is a client credential with the address of the API server.
type Kubeconfig struct {
	Name         string // "admin", "kubelet-cp1"
	CommonName   string
	Organization []string
	Server       string
}

// Tree is every certificate, key pair and kubeconfig a cluster needs, with how to make them.
type Tree struct {
	Cluster      string
	Algorithm    Algorithm
	CAValidity   time.Duration
	CertValidity time.Duration
	ExternalCA   bool
	// EncryptSecrets sends control planes the EncryptionConfiguration of the state directory.
	EncryptSecrets bool
	// APILoadBalancer sends nodes the load balancer's client certificate.
	APILoadBalancer bool
	// NetworkPolicy sends nodes kube-router's kubeconfig.
	NetworkPolicy bool
	// Flannel sends nodes flanneld's kubeconfig.
	Flannel bool
	// Multus sends nodes the kubeconfig of Multus's CNI plugin.
	Multus bool
	// Monitoring sends every host its metrics endpoint's certificate.
	Monitoring  bool
	CAs         []Cert
	Leaves      []Cert
	Kubeconfigs []Kubeconfig
}

// ServiceAccountKey is the name of the service-account signing key pair (sa.key, sa.pub).
const ServiceAccountKey = "sa"

// TreeFor declares the tree a cluster needs: the same list kubeadm produces, for every control-plane and etcd
// host at once, plus a kubelet kubeconfig per node.
func TreeFor(c *api.Cluster) (*Tree, error) {
	s := &c.Spec
	t := &Tree{Cluster: c.Metadata.Name, Algorithm: Algorithm(s.PKI.KeyAlgorithm), CAValidity: s.PKI.CAValidity.Duration,
		CertValidity: s.PKI.CertValidity.Duration, ExternalCA: s.PKI.ExternalCA, EncryptSecrets: s.APIServer.SecretsEncrypted(),
		APILoadBalancer: s.APILoadBalancer.On(), NetworkPolicy: s.Network.PolicyEnforced(), Flannel: s.Network.Flannel(),
		Multus: s.Addons.Multus.On(), Monitoring: s.Addons.Monitoring.Enabled}
	server := "https://" + s.ControlPlaneEndpoint
	// nodes reach the API through their own load balancer when it runs: no control plane is a single point of
	// failure for them
	nodeServer := server
	if s.APILoadBalancer.On() {
		nodeServer = "https://" + s.APILoadBalancer.Address()
	}
	local := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(api.DefaultAPIServerPort))
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

	t.CAs = []Cert{
		{Name: ClusterCA, CommonName: "kubernetes"},
		{Name: FrontProxyCA, CommonName: "front-proxy-ca"},
		{Name: EtcdCA, CommonName: "etcd-ca"},
	}
	// one serving certificate per API server, naming its own host: a control plane joining or leaving changes
	// no other API server's certificate, and so restarts none
	for _, h := range s.HostsWithRole(api.RoleControlPlane) {
		apiserver, err := apiserverSANs(c, h)
		if err != nil {
			return nil, err
		}
		apiserver.Name, apiserver.CA, apiserver.CommonName = APIServerCert(h.Name), ClusterCA, "kube-apiserver"
		apiserver.Usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		t.Leaves = append(t.Leaves, apiserver)
	}
	t.Leaves = append(t.Leaves,
		Cert{Name: "apiserver-kubelet-client", CA: ClusterCA, CommonName: "kube-apiserver-kubelet-client", Usages: client},
		Cert{Name: "front-proxy-client", CA: FrontProxyCA, CommonName: "front-proxy-client", Usages: client},
		Cert{Name: "apiserver-etcd-client", CA: EtcdCA, CommonName: "kube-apiserver-etcd-client", Usages: client},
		Cert{Name: "etcd/healthcheck-client", CA: EtcdCA, CommonName: "kube-etcd-healthcheck-client", Usages: client},
	)
	for _, h := range s.HostsWithRole(api.RoleEtcd) {
		dns := []string{h.Name, "localhost"}
		ips := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
		if ip := net.ParseIP(h.InternalAddress); ip != nil {
			ips = append(ips, ip)
		}
		t.Leaves = append(t.Leaves,
			Cert{Name: "etcd/server-" + h.Name, CA: EtcdCA, CommonName: h.Name, Usages: both, DNSNames: dns, IPs: ips},
			Cert{Name: "etcd/peer-" + h.Name, CA: EtcdCA, CommonName: h.Name, Usages: both, DNSNames: dns, IPs: ips},
		)
	}
	if s.APILoadBalancer.On() {
		// the load balancer reads /readyz, which any authenticated identity may: this one has no other right
		t.Leaves = append(t.Leaves, Cert{Name: APILoadBalancerCert, CA: ClusterCA, CommonName: "privcloud:api-lb", Usages: client})
	}
	if q := s.Addons.Quay; q.Enabled {
		// Quay's serving certificate; 127.0.0.1 is where each node's containerd reaches it through the NodePort
		t.Leaves = append(t.Leaves, Cert{Name: QuayCert, CA: ClusterCA, CommonName: q.Hostname,
			Usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: QuayDNSNames(s), IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	}
	if t.Monitoring {
		// Prometheus's one identity: it reads /metrics of the API servers and kubelets (the monitoring add-on's
		// RBAC) and of every host's metrics endpoint, and nothing else
		t.Leaves = append(t.Leaves, Cert{Name: PrometheusClientCert, CA: ClusterCA, CommonName: PrometheusUser, Usages: client})
		// each host's metrics endpoint serves with its own, and shows it to the controller-manager and the
		// scheduler on the loopback, which let its name read /metrics
		for _, h := range s.Hosts {
			var ips []net.IP
			if ip := net.ParseIP(h.InternalAddress); ip != nil {
				ips = append(ips, ip)
			}
			t.Leaves = append(t.Leaves, Cert{Name: MetricsCert(h.Name), CA: ClusterCA, CommonName: MetricsUser, Usages: both,
				DNSNames: []string{h.Name}, IPs: ips})
		}
	}
	// each kubelet's serving certificate, from the cluster CA: the API servers verify every kubelet they call
	// (logs, exec, port-forward) instead of trusting whatever certificate it made for itself
	for _, h := range s.Hosts {
		if !h.IsNode() {
			continue
		}
		var ips []net.IP
		if ip := net.ParseIP(h.InternalAddress); ip != nil {
			ips = append(ips, ip)
		}
		t.Leaves = append(t.Leaves, Cert{Name: KubeletServingCert(h.Name), CA: ClusterCA, CommonName: "system:node:" + h.Name,
			Organization: []string{"system:nodes"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{h.Name}, IPs: ips})
	}
	t.Kubeconfigs = []Kubeconfig{
		{Name: "admin", CommonName: "kubernetes-admin", Organization: []string{AdminGroup}, Server: server},
		{Name: "super-admin", CommonName: "kubernetes-super-admin", Organization: []string{"system:masters"}, Server: server},
		{Name: "controller-manager", CommonName: "system:kube-controller-manager", Server: local},
		{Name: "scheduler", CommonName: "system:kube-scheduler", Server: local},
		{Name: "kube-proxy", CommonName: "system:kube-proxy", Server: nodeServer},
	}
	if t.NetworkPolicy {
		// one identity for every node's NetworkPolicy firewall: it only reads pods, namespaces and policies
		t.Kubeconfigs = append(t.Kubeconfigs, Kubeconfig{Name: KubeRouterKubeconfig, CommonName: KubeRouterUser, Server: nodeServer})
	}
	if t.Flannel {
		// one identity for every node's flanneld: it reads nodes and writes its own node's overlay annotations
		t.Kubeconfigs = append(t.Kubeconfigs, Kubeconfig{Name: FlannelKubeconfig, CommonName: FlannelUser, Server: nodeServer})
	}
	if t.Multus {
		// one identity for Multus's CNI plugin on every node: it reads a pod's network annotations and the
		// networks they name, and records the pod's interfaces in its status
		t.Kubeconfigs = append(t.Kubeconfigs, Kubeconfig{Name: MultusKubeconfig, CommonName: MultusUser, Server: nodeServer})
	}
	for _, h := range s.Hosts {
		if h.IsNode() {
			t.Kubeconfigs = append(t.Kubeconfigs, Kubeconfig{Name: "kubelet-" + h.Name, CommonName: "system:node:" + h.Name,
				Organization: []string{"system:nodes"}, Server: nodeServer})
		}
	}
	return t, nil
}

// KubeRouterKubeconfig is the kubeconfig of the NetworkPolicy firewall (kube-router) on every node, and
// KubeRouterUser its user, whom the cluster RBAC lets read what NetworkPolicy selects.
const (
	KubeRouterKubeconfig = "kube-router"
	KubeRouterUser       = "system:privcloud:kube-router"
)

// FlannelKubeconfig is the kubeconfig of the pod network's daemon (flanneld) on every node, and FlannelUser
// its user, whom the cluster RBAC lets read nodes and annotate them.
const (
	FlannelKubeconfig = "flannel"
	FlannelUser       = "system:privcloud:flannel"
)

// MultusKubeconfig is the kubeconfig of Multus's CNI plugin on every node (containerd runs the plugin for each
// pod; it reads the file each time), and MultusUser its user, whom the cluster RBAC lets read pods and their
// networks and write pods' network status.
const (
	MultusKubeconfig = "multus"
	MultusUser       = "system:privcloud:multus"
	MultusConf       = "multus.conf" // in RemoteConfDir
)

// APILoadBalancerCert is the client certificate the node-local API load balancer checks the API servers with.
const APILoadBalancerCert = "api-lb"

// The monitoring add-on's identities: Prometheus scrapes as PrometheusUser with PrometheusClientCert; each
// host's metrics endpoint serves with MetricsCert(host) and reads the loopback's HTTPS components as
// MetricsUser.
const (
	PrometheusClientCert = "prometheus-client"
	PrometheusUser       = "system:privcloud:prometheus"
	MetricsUser          = "system:privcloud:metrics"
)

// MetricsCert is the name of host's metrics endpoint certificate in the tree.
func MetricsCert(host string) string { return "metrics/" + host }

// KubeletServingCert is the name of host's kubelet serving certificate in the tree.
func KubeletServingCert(host string) string { return "kubelet/" + host }

// APIServerCert is the name of host's API server serving certificate in the tree.
func APIServerCert(host string) string { return "apiserver/" + host }

// apiserverSANs collects the names of h's API server certificate: the host's name and addresses, the
// control-plane endpoint, the kubernetes Service names and address, loopback and the extra SANs.
func apiserverSANs(c *api.Cluster, h api.Host) (Cert, error) {
	s := &c.Spec
	dns := map[string]bool{}
	ips := map[netip.Addr]bool{}
	addName := func(n string) {
		if n == "" {
			return
		}
		if ip, err := netip.ParseAddr(n); err == nil {
			ips[ip] = true
		} else {
			dns[n] = true
		}
	}
	addName(h.Name)
	addName(h.Address)
	addName(h.InternalAddress)
	if host, _, err := net.SplitHostPort(s.ControlPlaneEndpoint); err == nil {
		addName(host)
	}
	for _, n := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + s.Network.DNSDomain, "127.0.0.1"} {
		addName(n)
	}
	svc, err := netip.ParsePrefix(s.Network.ServiceCIDR)
	if err != nil {
		return Cert{}, fmt.Errorf("spec.network.serviceCIDR: %w", err)
	}
	first, ok := api.NthAddress(svc, 1)
	if !ok {
		return Cert{}, fmt.Errorf("spec.network.serviceCIDR %s has no first address", svc)
	}
	ips[first] = true
	for _, san := range s.PKI.ExtraSANs {
		addName(san)
	}
	out := Cert{}
	for n := range dns {
		out.DNSNames = append(out.DNSNames, n)
	}
	sort.Strings(out.DNSNames)
	var sorted []netip.Addr
	for ip := range ips {
		sorted = append(sorted, ip)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	for _, ip := range sorted {
		out.IPs = append(out.IPs, net.IP(ip.AsSlice()))
	}
	return out, nil
}

// Names lists every entry of the tree: CAs, the service-account key, leaves and kubeconfigs ("kubeconfig/NAME").
func (t *Tree) Names() []string {
	var out []string
	for _, c := range t.CAs {
		out = append(out, c.Name)
	}
	out = append(out, ServiceAccountKey)
	for _, c := range t.Leaves {
		out = append(out, c.Name)
	}
	for _, k := range t.Kubeconfigs {
		out = append(out, "kubeconfig/"+k.Name)
	}
	return out
}
