// Package templates renders every file privcloud writes to a node from embedded templates, so what lands on
// hosts is reviewable in one place and pinned by golden files.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
)

//go:embed files/*
var files embed.FS

var parsed = template.Must(template.New("").Option("missingkey=error").ParseFS(files, "files/*"))

// Render fills the template named name (a file under files/) with data.
func Render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := parsed.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Containerd is what containerd's drop-in is made of.
type Containerd struct {
	Version             string
	DefaultRuntime      string
	SystemdCgroup       bool
	RestrictOOMScoreAdj bool
	Kata                bool
	KataHandler         string
	SandboxImage        string
}

// RegistryHosts is one registry's hosts.toml under containerd's config_path: its mirrors, tried in order
// before the registry itself.
type RegistryHosts struct {
	Server string // the registry's own URL
	Hosts  []RegistryHost
}

// RegistryHost is one mirror; CA, when set, is the file containerd trusts for its TLS certificate.
type RegistryHost struct {
	URL, CA string
}

// Etcd is one etcd member's unit.
type Etcd struct {
	Name, IP, DataDir string
	BootstrapFile     string   // the initial cluster, state and token, as ETCD_* variables
	ExtraArgs         []string // flag=value, without dashes
}

// CipherSuites are the TLS 1.2 suites the API server and kubelets accept: forward secrecy and AEAD only
// (TLS 1.3's own suites are not configurable and all qualify). ChaCha20 goes by the name both components and
// the CIS benchmark's checks know.
const CipherSuites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256," +
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384," +
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"

// APIServer is one kube-apiserver's unit.
type APIServer struct {
	Version, IP, EtcdServers, ServiceCIDR, DNSDomain string
	CipherSuites                                     string
	Audit                                            bool
	AuditMaxAge, AuditMaxBackup, AuditMaxSize        int
	EncryptSecrets                                   bool
	ExtraArgs                                        []string // flag=value, without dashes, sorted
}

// Admission is the API server's admission configuration: Pod Security's defaults and exemptions.
type Admission struct {
	Enforce, Audit, Warn string
	ExemptNamespaces     []string
}

// ControllerManager is kube-controller-manager's unit (kube-scheduler's uses only Version).
type ControllerManager struct {
	Version, ClusterName, PodCIDR, ServiceCIDR string
	NodeCIDRMaskSize                           int
	ExtraArgs                                  []string // flag=value, without dashes, sorted
}

// Setting is one key and value of a map, for templates that write maps in a stable order.
type Setting struct{ Key, Value string }

// Node is what a node's kubelet, kube-proxy and pod network files are made of.
type Node struct {
	Version, Name, IP     string
	APIServer             string // the URL the node's kubelet and kube-proxy reach the API at
	APILoadBalancer       bool   // through the node-local load balancer
	CgroupDriver          string
	FailCgroupV1          bool
	ClusterDNS, DNSDomain string
	MaxPods               int
	PodPidsLimit          int
	CipherSuites          string
	Labels, Taints        string   // comma-separated key=value and key=value:Effect
	ExtraArgs             []string // the kubelet's extra flags: flag=value, without dashes, sorted
	PodCIDR, Mode         string
	ClusterCIDR           string // every node's pods: traffic leaving it is masqueraded, pod-to-pod traffic never
	IPTables              string // iptables or ip6tables, for ClusterCIDR's family
	ResolvConf            string // what pods with dnsPolicy Default resolve with
	EvictionHard          []Setting
	ConntrackMaxPerCore   int32
	Routes                []Route
}

// APILoadBalancer is what the node-local API load balancer's unit and configuration are made of.
type APILoadBalancer struct {
	Name           string   // the node
	Listen, Health string   // loopback addresses
	Backends       []string // every API server, host:port
}

// Metrics is what a host's metrics endpoint unit is made of.
type Metrics struct {
	Name   string // the host
	Listen string // its address and the metrics port
}

// KubeRouter is what the NetworkPolicy firewall's unit is made of.
type KubeRouter struct {
	Name        string // the node
	ServiceCIDR string
	HealthPort  int
}

// Flannel is what the pod network daemon's unit and network configuration are made of.
type Flannel struct {
	Name, IP   string // the node and the address its VXLAN traffic leaves from
	HealthPort int
	Network    string // the cluster's pod CIDR
	IPv6       bool
	VXLANPort  int
}

// Route sends a pod network to the node that hosts it.
type Route struct{ CIDR, Via string }
