// Package v1alpha1 holds the cluster.yaml API: the types, their defaults, their validation and a strict loader.
//
// Every field carries a `doc` tag. It is the single source for the JSON Schema descriptions
// (`privcloud config schema`) and for the comments of `privcloud config print-defaults`, so the two never drift.
package v1alpha1

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	// Group is the API group of every privcloud document.
	Group = "privcloud.io"
	// Version is the version of this package's types.
	Version = "v1alpha1"
	// APIVersion is the apiVersion a cluster.yaml of this package declares.
	APIVersion = Group + "/" + Version
	// KindCluster is the only kind this version knows.
	KindCluster = "Cluster"
)

// Cluster is the whole declarative description of one cluster: its machines and how Kubernetes runs on them.
type Cluster struct {
	APIVersion string      `json:"apiVersion" enum:"privcloud.io/v1alpha1" doc:"Always privcloud.io/v1alpha1."`
	Kind       string      `json:"kind" enum:"Cluster" doc:"Always Cluster."`
	Metadata   ObjectMeta  `json:"metadata" doc:"Identity of the cluster."`
	Spec       ClusterSpec `json:"spec" doc:"What the cluster is made of."`
}

// ObjectMeta names the cluster.
type ObjectMeta struct {
	Name string `json:"name" doc:"Cluster name: a DNS label (lowercase letters, digits, '-'). Used in kubeconfig contexts and the state directory."`
}

// ClusterSpec is everything privcloud installs and how.
type ClusterSpec struct {
	KubernetesVersion    string          `json:"kubernetesVersion,omitempty" doc:"Kubernetes version to install (vX.Y.Z); the bundle must carry it."`
	ControlPlaneEndpoint string          `json:"controlPlaneEndpoint,omitempty" doc:"host:port clients use to reach the API server (a load balancer or VIP for several control planes). Default: the first control-plane host's address and port 6443."`
	StateDir             string          `json:"stateDir,omitempty" doc:"Local directory for the PKI, kubeconfigs and backups, relative to cluster.yaml. Keys in it are 0600."`
	Hosts                []Host          `json:"hosts" doc:"Machines of the cluster, reached over SSH."`
	SSH                  SSH             `json:"ssh,omitempty" doc:"How privcloud connects to the hosts."`
	Network              Network         `json:"network,omitempty" doc:"Cluster networking."`
	APIServer            APIServer       `json:"apiServer,omitempty" doc:"Hardening of the API servers: audit logging, Secrets encrypted at rest, Pod Security admission; extra flags."`
	ControllerManager    ComponentFlags  `json:"controllerManager,omitempty" doc:"Extra flags for kube-controller-manager."`
	Scheduler            ComponentFlags  `json:"scheduler,omitempty" doc:"Extra flags for kube-scheduler."`
	APILoadBalancer      APILoadBalancer `json:"apiLoadBalancer,omitempty" doc:"The load balancer on every node that spreads the kubelet's and kube-proxy's API connections over every control plane."`
	Etcd                 Etcd            `json:"etcd,omitempty" doc:"The etcd cluster run on the hosts with the etcd role."`
	Containerd           Containerd      `json:"containerd,omitempty" doc:"The container runtime on every node."`
	Kubelet              Kubelet         `json:"kubelet,omitempty" doc:"Settings for the kubelet on every node."`
	KubeProxy            KubeProxy       `json:"kubeProxy,omitempty" doc:"Settings for kube-proxy on every node."`
	Addons               Addons          `json:"addons,omitempty" doc:"Cluster add-ons applied after the nodes are Ready."`
	Bundle               BundleRef       `json:"bundle,omitempty" doc:"The air-gap bundle every binary and image comes from."`
	PKI                  PKI             `json:"pki,omitempty" doc:"The cluster's certificates and keys."`
}

// Role is what a host does in the cluster.
type Role string

const (
	RoleControlPlane Role = "control-plane"
	RoleEtcd         Role = "etcd"
	RoleWorker       Role = "worker"
)

// Roles lists every role a host may have, in a stable order.
var Roles = []Role{RoleControlPlane, RoleEtcd, RoleWorker}

// Host is one machine of the cluster.
type Host struct {
	Name            string            `json:"name" doc:"Host name; becomes the Kubernetes node name. A DNS-1123 subdomain, unique in the cluster."`
	Address         string            `json:"address" doc:"Address privcloud connects to over SSH: an IP address or a DNS name."`
	InternalAddress string            `json:"internalAddress,omitempty" doc:"IP address cluster traffic uses (node InternalIP, etcd peers). Default: address, when it is an IP."`
	Port            int               `json:"port,omitempty" doc:"SSH port."`
	User            string            `json:"user,omitempty" doc:"SSH user; non-root users need sudo (see ssh.sudo)."`
	SSHKeyPath      string            `json:"sshKeyPath,omitempty" doc:"Private key file for this host. Its passphrase, if any, comes from PRIVCLOUD_SSH_KEY_PASSPHRASE or a terminal prompt."`
	HostKey         string            `json:"hostKey,omitempty" doc:"Pinned SSH host public key in authorized_keys format (e.g. 'ssh-ed25519 AAAA...'). The host must present it; it is trusted even when known_hosts does not list the host, and a different key in known_hosts is still refused."`
	Bastions        []Bastion         `json:"bastions,omitempty" doc:"Jump hosts to cross, in order, before reaching this host."`
	Roles           []Role            `json:"roles" enum:"control-plane,etcd,worker" doc:"What the host runs: control-plane, etcd, worker."`
	Labels          map[string]string `json:"labels,omitempty" doc:"Kubernetes node labels, set on the Node by every init and join (a label taken out of cluster.yaml is removed; labels set by others stay)."`
	Taints          []Taint           `json:"taints,omitempty" doc:"Kubernetes node taints, set on the Node by every init and join (a taint taken out of cluster.yaml is removed; taints set by others stay)."`
}

// Bastion is one jump host on the way to a cluster host.
type Bastion struct {
	Address    string `json:"address" doc:"Jump host address."`
	Port       int    `json:"port,omitempty" doc:"Jump host SSH port."`
	User       string `json:"user,omitempty" doc:"Jump host SSH user."`
	SSHKeyPath string `json:"sshKeyPath,omitempty" doc:"Private key for the jump host."`
	HostKey    string `json:"hostKey,omitempty" doc:"Pinned jump host public key (authorized_keys format)."`
}

// Taint is a Kubernetes node taint.
type Taint struct {
	Key    string `json:"key" doc:"Taint key (a qualified name)."`
	Value  string `json:"value,omitempty" doc:"Taint value."`
	Effect string `json:"effect" enum:"NoSchedule,PreferNoSchedule,NoExecute" doc:"NoSchedule, PreferNoSchedule or NoExecute."`
}

// SSH holds the connection settings shared by every host.
type SSH struct {
	KnownHostsFiles   []string `json:"knownHostsFiles,omitempty" doc:"known_hosts files that host keys are verified against (hashed entries, @cert-authority and @revoked understood)."`
	Concurrency       int      `json:"concurrency,omitempty" doc:"How many hosts privcloud works on at once."`
	ConnectTimeout    Duration `json:"connectTimeout,omitempty" doc:"Limit for establishing one SSH connection."`
	CommandTimeout    Duration `json:"commandTimeout,omitempty" doc:"Default limit for one remote command."`
	KeepAliveInterval Duration `json:"keepAliveInterval,omitempty" doc:"Interval of SSH keepalive requests."`
	Sudo              Sudo     `json:"sudo,omitempty" doc:"Privilege escalation for non-root users."`
	PasswordEnv       string   `json:"passwordEnv,omitempty" doc:"Environment variable holding an SSH login password, offered after the key. Empty: keys only."`
}

// Sudo says how commands get root on hosts whose user is not root.
type Sudo struct {
	PasswordEnv string `json:"passwordEnv,omitempty" doc:"Environment variable holding the sudo password, fed to sudo on stdin. Empty: passwordless sudo."`
}

// Network is the cluster's addressing.
type Network struct {
	PodCIDR          string `json:"podCIDR,omitempty" doc:"Addresses for pods; every node gets a slice of nodeCIDRMaskSize bits."`
	ServiceCIDR      string `json:"serviceCIDR,omitempty" doc:"Addresses for ClusterIP Services (IPv4: /12 or smaller)."`
	ClusterDNS       string `json:"clusterDNS,omitempty" doc:"ClusterIP of the cluster DNS Service; inside serviceCIDR."`
	DNSDomain        string `json:"dnsDomain,omitempty" doc:"Cluster DNS domain."`
	Plugin           string `json:"plugin,omitempty" enum:"flannel,bridge" doc:"Pod network: 'flannel' (flannel's VXLAN overlay: nodes on any routed subnets, UDP 8472 open between them, MTU taken from each node's interface) or 'bridge' (bridge + host-local CNI plugins and routes between nodes, no encapsulation: every node on one layer-2 segment). Chosen at install: a running cluster keeps its pod network."`
	NodeCIDRMaskSize int    `json:"nodeCIDRMaskSize,omitempty" doc:"Prefix length of each node's pod CIDR."`
	Policy           string `json:"policy,omitempty" enum:"kube-router,none" doc:"NetworkPolicy enforcement: 'kube-router' (kube-router's firewall on every node, iptables and ipset, which every node needs installed) or 'none' (NetworkPolicy objects are stored and ignored: say so only if something else enforces them)."`
}

// Flannel reports whether the pod network is flannel's overlay.
func (n *Network) Flannel() bool { return n.Plugin == NetworkFlannel }

// PolicyEnforced reports whether NetworkPolicy is enforced by privcloud's kube-router firewall.
func (n *Network) PolicyEnforced() bool { return n.Policy == NetworkPolicyKubeRouter }

// APIServer holds the API servers' security settings; every default is the hardened one.
type APIServer struct {
	Audit          Audit             `json:"audit,omitempty" doc:"Audit logging of every request to the API server."`
	EncryptSecrets *bool             `json:"encryptSecrets,omitempty" doc:"Encrypt Secrets in etcd (secretbox, a key generated into the state directory, 0600, part of 'privcloud backup', sent only to control planes). Never switch it off on a cluster that has encrypted Secrets: the API server could no longer read them."`
	PodSecurity    PodSecurity       `json:"podSecurity,omitempty" doc:"The Pod Security admission defaults for namespaces that set no level of their own."`
	ExtraArgs      map[string]string `json:"extraArgs,omitempty" doc:"Extra kube-apiserver flags, without leading dashes. Flags privcloud sets itself (certificates, etcd, ports, admission, audit, authorization) are refused, and so are values with spaces, quotes or shell characters. A change is rolled out one control plane at a time, each gated on /readyz."`
	// AcceptInsecureExtraArgs is deliberately long: turning a protection off must be said in so many words.
	AcceptInsecureExtraArgs bool `json:"acceptInsecureExtraArgs,omitempty" doc:"Run extraArgs that switch a protection off (anonymous-auth=true, authorization-mode=AlwaysAllow, profiling=true, TLS below 1.2, ...). Refused unless this is true."`
}

// ComponentFlags are extra flags for a component that has no other settings.
type ComponentFlags struct {
	ExtraArgs map[string]string `json:"extraArgs,omitempty" doc:"Extra flags, without leading dashes. Flags privcloud sets itself are refused, and so are values with spaces, quotes or shell characters. A change is rolled out one control plane at a time, each gated on health."`
	// AcceptInsecureExtraArgs is deliberately long: turning a protection off must be said in so many words.
	AcceptInsecureExtraArgs bool `json:"acceptInsecureExtraArgs,omitempty" doc:"Run extraArgs that switch a protection off (profiling=true, a bind address other than loopback, ...). Refused unless this is true."`
}

// SecretsEncrypted reports whether Secrets are encrypted at rest (the default once defaulted).
func (a *APIServer) SecretsEncrypted() bool { return a.EncryptSecrets != nil && *a.EncryptSecrets }

// Audited reports whether the audit log is written.
func (a *APIServer) Audited() bool { return a.Audit.Enabled != nil && *a.Audit.Enabled }

// APILoadBalancer is the node-local API server load balancer (privcloud-api-lb): every node's kubelet and
// kube-proxy reach the API through it on loopback, so no single control plane is a point of failure.
type APILoadBalancer struct {
	Enabled *bool `json:"enabled,omitempty" doc:"Run it on every node (default true). Off: nodes reach the API at controlPlaneEndpoint, which should then be a load balancer or VIP of your own."`
	Port    int   `json:"port,omitempty" doc:"Loopback port it listens on (default 6444); its health endpoint (/healthz, /backends) is on the next port."`
}

// On reports whether the node-local load balancer runs (the default once defaulted).
func (l *APILoadBalancer) On() bool { return l.Enabled != nil && *l.Enabled }

// Address is where a node's clients reach the load balancer.
func (l *APILoadBalancer) Address() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port))
}

// HealthAddress is the load balancer's health endpoint.
func (l *APILoadBalancer) HealthAddress() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port+1))
}

// Audit configures the API server's audit log.
type Audit struct {
	Enabled   *bool `json:"enabled,omitempty" doc:"Write the audit log: metadata (who, what, when, result) of every request; request and response bodies are never logged, so no Secret reaches it."`
	MaxAge    int   `json:"maxAge,omitempty" doc:"Days an audit log file is kept."`
	MaxBackup int   `json:"maxBackup,omitempty" doc:"Rotated audit log files kept."`
	MaxSize   int   `json:"maxSize,omitempty" doc:"Size in MB at which the audit log is rotated."`
}

// PodSecurity is the cluster-wide Pod Security admission configuration.
type PodSecurity struct {
	Enforce          string   `json:"enforce,omitempty" enum:"privileged,baseline,restricted" doc:"Level pods are refused below: privileged, baseline or restricted."`
	Audit            string   `json:"audit,omitempty" enum:"privileged,baseline,restricted" doc:"Level whose violations are written to the audit log."`
	Warn             string   `json:"warn,omitempty" enum:"privileged,baseline,restricted" doc:"Level whose violations are returned to the client as warnings."`
	ExemptNamespaces []string `json:"exemptNamespaces,omitempty" doc:"Namespaces exempt from Pod Security admission: the system namespaces whose components need host access."`
}

// Etcd configures the etcd members.
type Etcd struct {
	DataDir   string            `json:"dataDir,omitempty" doc:"Data directory on every etcd host: absolute, letters, digits and . _ / + @ - only, and a folder of its own (reset removes it), never a system folder such as / or /var/lib."`
	ExtraArgs map[string]string `json:"extraArgs,omitempty" doc:"Extra etcd flags, without leading dashes. Flags privcloud sets itself (data-dir, listen and advertise URLs, certificate files, initial cluster) are refused, and so are values with spaces, quotes or shell characters."`
	// AcceptInsecureExtraArgs is deliberately long: turning a protection off must be said in so many words.
	AcceptInsecureExtraArgs bool `json:"acceptInsecureExtraArgs,omitempty" doc:"Run extraArgs that switch a protection off (client-cert-auth=false, peer-client-cert-auth=false, auto-tls, enable-pprof, unsafe-* flags, TLS below 1.2). Refused unless this is true."`
}

// Containerd configures the container runtime.
type Containerd struct {
	DefaultRuntime      string           `json:"defaultRuntime,omitempty" doc:"Runtime handler used when a pod names no RuntimeClass: runc, or kata when enabled."`
	Kata                Kata             `json:"kata,omitempty" doc:"Kata Containers: pods in lightweight VMs, chosen per pod with a RuntimeClass."`
	RestrictOOMScoreAdj bool             `json:"restrictOOMScoreAdj,omitempty" doc:"Set when hosts lack CAP_SYS_RESOURCE (containers, some sandboxes): containerd then never lowers oom_score_adj."`
	RegistryMirrors     []RegistryMirror `json:"registryMirrors,omitempty" doc:"Mirrors containerd uses instead of a registry."`
}

// Kata enables Kata Containers as an extra runtime.
type Kata struct {
	Enabled          bool   `json:"enabled,omitempty" doc:"Register the kata runtime in containerd and create its RuntimeClass. Kata pods need /dev/kvm on the node and Kata Containers installed there (containerd-shim-kata-v2, its guest kernel and image, a hypervisor: the distribution's packages or Kata's static release; the bundle cannot carry them). preflight warns where either is missing."`
	RuntimeClassName string `json:"runtimeClassName,omitempty" doc:"Name of the RuntimeClass pods select."`
	Handler          string `json:"handler,omitempty" doc:"containerd runtime handler name."`
	OverheadCPU      string `json:"overheadCPU,omitempty" doc:"Pod overhead CPU accounted for each Kata pod (a Kubernetes quantity)."`
	OverheadMemory   string `json:"overheadMemory,omitempty" doc:"Pod overhead memory accounted for each Kata pod (a Kubernetes quantity)."`
}

// RegistryMirror points containerd at mirrors of one registry.
type RegistryMirror struct {
	Registry  string   `json:"registry" doc:"Registry host being mirrored, e.g. docker.io or quay.example.com:443."`
	Endpoints []string `json:"endpoints" doc:"Mirror URLs, tried in order (https:// or http://)."`
}

// Kubelet configures the kubelet.
type Kubelet struct {
	CgroupDriver string            `json:"cgroupDriver,omitempty" enum:"systemd,cgroupfs" doc:"systemd or cgroupfs; must match how containerd runs containers."`
	FailCgroupV1 *bool             `json:"failCgroupV1,omitempty" doc:"Refuse to start on cgroup v1 hosts (Kubernetes >= 1.35 default). Set false for cgroup v1 hosts."`
	MaxPods      int               `json:"maxPods,omitempty" doc:"Maximum pods per node."`
	PodPidsLimit int               `json:"podPidsLimit,omitempty" doc:"Most processes one pod may run: a fork bomb stays in its pod."`
	ExtraArgs    map[string]string `json:"extraArgs,omitempty" doc:"Extra kubelet flags, without leading dashes: they override the kubelet's configuration file. Flags privcloud sets itself (config, kubeconfig, node name, IP, labels, taints) are refused, and so are values with spaces, quotes or shell characters. A change is rolled out a batch of nodes at a time, each gated on the node being Ready."`
	// AcceptInsecureExtraArgs is deliberately long: turning a protection off must be said in so many words.
	AcceptInsecureExtraArgs bool              `json:"acceptInsecureExtraArgs,omitempty" doc:"Run extraArgs that switch a protection off (anonymous-auth=true, authorization-mode=AlwaysAllow, a read-only port, ...). Refused unless this is true."`
	EvictionHard            map[string]string `json:"evictionHard,omitempty" doc:"The kubelet's hard eviction thresholds by signal (memory.available, nodefs.available, imagefs.available, nodefs.inodesFree, imagefs.inodesFree, containerfs.available, containerfs.inodesFree, pid.available), each a quantity or a percentage such as 5%. Unset: the kubelet's defaults. Nodes whose disk is shared with other things (lab hosts on one machine) want low disk thresholds, or they evict their pods for what others use."`
}

// KubeProxy configures kube-proxy.
type KubeProxy struct {
	Mode      string    `json:"mode,omitempty" enum:"iptables,ipvs,nftables" doc:"iptables, ipvs or nftables."`
	Conntrack Conntrack `json:"conntrack,omitempty" doc:"Connection tracking limits kube-proxy sets."`
}

// Conntrack mirrors kube-proxy's conntrack settings.
type Conntrack struct {
	MaxPerCore *int32 `json:"maxPerCore,omitempty" doc:"nf_conntrack_max per CPU core; 0 leaves the kernel's value (needed where it cannot be set, e.g. in a container)."`
}

// Addons lists the add-ons privcloud applies.
type Addons struct {
	CoreDNS    CoreDNS    `json:"coredns,omitempty" doc:"Cluster DNS."`
	Multus     Multus     `json:"multus,omitempty" doc:"Several networks per pod."`
	Quay       Quay       `json:"quay,omitempty" doc:"The cluster's private image registry."`
	Monitoring Monitoring `json:"monitoring,omitempty" doc:"Prometheus, Alertmanager and node-exporter, run by the Prometheus Operator, scraping every component privcloud installs."`
}

// Monitoring configures the monitoring add-on.
type Monitoring struct {
	Enabled      bool   `json:"enabled,omitempty" doc:"Install the monitoring add-on (needs its images in the bundle) and every host's metrics endpoint."`
	Retention    string `json:"retention,omitempty" doc:"How long Prometheus keeps samples (a Prometheus duration: 12h, 15d, 8w)."`
	StorageClass string `json:"storageClass,omitempty" doc:"StorageClass of Prometheus's volume. Empty: an emptyDir, lost when the pod moves."`
	StorageSize  string `json:"storageSize,omitempty" doc:"Size of Prometheus's volume when storageClass is set."`
}

// CoreDNS configures the cluster DNS add-on.
type CoreDNS struct {
	Enabled   *bool    `json:"enabled,omitempty" doc:"Install CoreDNS."`
	Replicas  int      `json:"replicas,omitempty" doc:"CoreDNS replicas (spread over nodes)."`
	Upstreams []string `json:"upstreams,omitempty" doc:"Resolvers for names outside the cluster (IP or IP:port). Empty: each node's /etc/resolv.conf."`
}

// Multus configures the multi-network CNI add-on.
type Multus struct {
	Enabled  *bool          `json:"enabled,omitempty" doc:"Install Multus."`
	Networks []ExtraNetwork `json:"networks,omitempty" doc:"Extra networks, each becoming a NetworkAttachmentDefinition."`
}

// On reports whether Multus is installed.
func (m *Multus) On() bool { return m.Enabled != nil && *m.Enabled }

// ExtraNetwork is a secondary pod network attached through Multus.
type ExtraNetwork struct {
	Name      string   `json:"name" doc:"NetworkAttachmentDefinition name (a DNS label)."`
	Namespace string   `json:"namespace,omitempty" doc:"Namespace of the NetworkAttachmentDefinition."`
	Type      string   `json:"type" enum:"macvlan,bridge" doc:"macvlan or bridge."`
	Master    string   `json:"master,omitempty" doc:"Host interface macvlan attaches to."`
	Bridge    string   `json:"bridge,omitempty" doc:"Bridge name for type bridge."`
	IPAM      string   `json:"ipam,omitempty" enum:"host-local,static" doc:"host-local or static."`
	Subnet    string   `json:"subnet,omitempty" doc:"Subnet for host-local IPAM."`
	Addresses []string `json:"addresses,omitempty" doc:"Addresses (CIDR notation) pods may request with static IPAM."`
}

// Quay configures the private registry add-on.
type Quay struct {
	Enabled      bool   `json:"enabled,omitempty" doc:"Install Quay (needs its image in the bundle)."`
	Hostname     string `json:"hostname,omitempty" doc:"DNS name clients use for the registry; goes into its TLS certificate."`
	StorageClass string `json:"storageClass,omitempty" doc:"StorageClass for Quay, PostgreSQL and Redis volumes. Empty: hostPath under hostPathDir."`
	HostPathDir  string `json:"hostPathDir,omitempty" doc:"Directory on a node for hostPath volumes when no storageClass is set."`
	UseAsMirror  bool   `json:"useAsMirror,omitempty" doc:"Add Quay as a mirror in every node's containerd."`
}

// BundleRef points at the air-gap bundle.
type BundleRef struct {
	Path       string   `json:"path,omitempty" doc:"Bundle file built by 'privcloud bundle build', relative to cluster.yaml."`
	PublicKeys []string `json:"publicKeys,omitempty" doc:"ed25519 public keys (PEM files written by 'privcloud bundle keygen', relative to cluster.yaml) one of which must have signed the bundle; set, an unsigned bundle or one signed by another key is refused before anything reaches a host."`
}

// PKI configures the cluster certificates.
type PKI struct {
	KeyAlgorithm string   `json:"keyAlgorithm,omitempty" enum:"ecdsa-p256,rsa-2048,rsa-3072,rsa-4096" doc:"ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096."`
	CertValidity Duration `json:"certValidity,omitempty" doc:"Lifetime of leaf certificates."`
	CAValidity   Duration `json:"caValidity,omitempty" doc:"Lifetime of CA certificates."`
	RenewBefore  Duration `json:"renewBefore,omitempty" doc:"Any run renews a leaf certificate or kubeconfig that expires sooner than this, and rolls it out host by host behind health gates. Must be shorter than certValidity."`
	ExternalCA   bool     `json:"externalCA,omitempty" doc:"CA keys are kept elsewhere: privcloud checks the leaves you provide instead of signing them."`
	ExtraSANs    []string `json:"extraSANs,omitempty" doc:"Additional DNS names and IPs for the API server certificate."`
}

// Duration is a time.Duration written as a Go duration string ("30s", "8760h") in YAML and JSON.
type Duration struct {
	time.Duration
}

// String writes the duration the way people do: "8760h", "10m", "1m30s" rather than "8760h0m0s".
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"30s\" or \"8760h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use units such as s, m, h (e.g. \"30s\", \"8760h\")", s)
	}
	d.Duration = v
	return nil
}

// HasRole reports whether the host has role r.
// IsNode reports whether the host runs a kubelet: control planes and workers do, etcd-only hosts do not.
func (h *Host) IsNode() bool { return h.HasRole(RoleControlPlane) || h.HasRole(RoleWorker) }

func (h *Host) HasRole(r Role) bool {
	for _, have := range h.Roles {
		if have == r {
			return true
		}
	}
	return false
}

// HostsWithRole returns the hosts that have role r, in file order.
func (s *ClusterSpec) HostsWithRole(r Role) []Host {
	var out []Host
	for _, h := range s.Hosts {
		if h.HasRole(r) {
			out = append(out, h)
		}
	}
	return out
}
