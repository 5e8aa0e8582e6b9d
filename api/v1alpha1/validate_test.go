package v1alpha1

import (
	"errors"
	"strings"
	"testing"
)

// base is a valid three-host cluster; each invalid case patches one piece of it.
const base = `apiVersion: privcloud.io/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  kubernetesVersion: v1.37.2
  hosts:
  - name: cp1
    address: 10.77.0.11
    roles: [control-plane, etcd]
  - name: w1
    address: 10.77.0.12
    roles: [worker]
  - name: w2
    address: 10.77.0.13
    roles: [worker]
  network:
    podCIDR: 10.244.0.0/16
    serviceCIDR: 10.96.0.0/12
`

func load(t *testing.T, doc string) (*Cluster, error) {
	t.Helper()
	return LoadBytes([]byte(doc), "cluster.yaml", "/etc/privcloud", "/home/op")
}

func TestBaseIsValid(t *testing.T) {
	c, err := load(t, base)
	if err != nil {
		t.Fatalf("base config must be valid: %v", err)
	}
	if got := c.Spec.Network.ClusterDNS; got != "10.96.0.10" {
		t.Errorf("clusterDNS default = %s, want 10.96.0.10", got)
	}
	if got := c.Spec.ControlPlaneEndpoint; got != "10.77.0.11:6443" {
		t.Errorf("controlPlaneEndpoint default = %s", got)
	}
	if got := c.Spec.StateDir; got != "/etc/privcloud/.privcloud" {
		t.Errorf("stateDir resolved to %s, want it next to cluster.yaml", got)
	}
	if got := c.Spec.Hosts[0].SSHKeyPath; got != "/home/op/.ssh/id_ed25519" {
		t.Errorf("sshKeyPath resolved to %s, want ~ expanded", got)
	}
}

// replace applies one textual edit to base, failing loudly if the edit does not apply.
func replace(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("test bug: %q not in base", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestInvalidConfigs(t *testing.T) {
	cases := []struct {
		name     string
		old, new string // edit applied to base; old=="" appends new under spec
		path     string
		line     int // 0: not asserted
		msg      string
	}{
		{"wrong apiVersion", "privcloud.io/v1alpha1", "privcloud.io/v2", "apiVersion", 1, "not supported"},
		{"wrong kind", "kind: Cluster", "kind: Clustr", "kind", 2, "not supported"},
		{"missing kind", "kind: Cluster\n", "", "kind", 0, "missing"},
		{"bad cluster name", "name: lab", "name: Lab_1", "metadata.name", 4, "DNS label"},
		{"bad version", "v1.37.2", "\"1.37\"", "spec.kubernetesVersion", 6, "vMAJOR.MINOR.PATCH"},
		{"too old version", "v1.37.2", "v1.20.0", "spec.kubernetesVersion", 6, "not supported"},
		{"misspelled host field", "    address: 10.77.0.12", "    adress: 10.77.0.12", "spec.hosts[1].adress", 12, `did you mean "address"`},
		{"unknown spec field", "  network:", "  netwrok:", "spec.netwrok", 17, `did you mean "network"`},
		{"port as string", "    address: 10.77.0.11", "    address: 10.77.0.11\n    port: twenty", "spec.hosts[0].port", 10, "whole number"},
		{"roles not a list", "roles: [worker]\n  - name: w2", "roles: worker\n  - name: w2", "spec.hosts[1].roles", 13, "expected a list"},
		{"duplicate key", "    roles: [worker]\n  - name: w2", "    roles: [worker]\n    roles: [worker]\n  - name: w2", "spec.hosts[1].roles", 14, "duplicate key"},
		{"invalid IP", "10.77.0.12", "10.77.0.300", "spec.hosts[1].address", 12, "neither an IP"},
		{"empty address", "    address: 10.77.0.13\n", "", "spec.hosts[2].address", 0, "must not be empty"},
		{"duplicate host name", "name: w2", "name: w1", "spec.hosts[2].name", 14, "also the name of spec.hosts[1]"},
		{"duplicate address", "10.77.0.13", "10.77.0.12", "spec.hosts[2].address", 15, "also the SSH address"},
		{"invalid host name", "name: w1", "name: W1!", "spec.hosts[1].name", 11, "node name"},
		{"port out of range", "    address: 10.77.0.11", "    address: 10.77.0.11\n    port: 70000", "spec.hosts[0].port", 10, "not a port"},
		{"unknown role", "roles: [worker]\n  - name: w2", "roles: [wroker]\n  - name: w2", "spec.hosts[1].roles[0]", 13, "unknown role"},
		{"duplicate role", "roles: [worker]\n  - name: w2", "roles: [worker, worker]\n  - name: w2", "spec.hosts[1].roles[1]", 13, "listed twice"},
		{"no roles", "roles: [worker]\n  - name: w2", "roles: []\n  - name: w2", "spec.hosts[1].roles", 13, "at least one role"},
		{"no control plane", "roles: [control-plane, etcd]", "roles: [etcd, worker]", "spec.hosts", 7, "control-plane"},
		{"even etcd count", "roles: [worker]\n  - name: w2", "roles: [worker, etcd]\n  - name: w2", "spec.hosts", 7, "odd number"},
		{"bad label", "    roles: [control-plane, etcd]", "    roles: [control-plane, etcd]\n    labels: {\"bad key!\": x}", "spec.hosts[0].labels.bad key!", 11, "label key"},
		{"bad taint effect", "    roles: [control-plane, etcd]", "    roles: [control-plane, etcd]\n    taints: [{key: dedicated, effect: Never}]", "spec.hosts[0].taints[0].effect", 11, "NoSchedule"},
		{"duplicate taint", "    roles: [control-plane, etcd]", "    roles: [control-plane, etcd]\n    taints: [{key: dedicated, effect: NoSchedule}, {key: dedicated, value: x, effect: NoSchedule}]", "spec.hosts[0].taints[1]", 11, "already taints[0]"},
		{"bad pinned host key", "    roles: [control-plane, etcd]", "    roles: [control-plane, etcd]\n    hostKey: ssh-ed25519 notbase64", "spec.hosts[0].hostKey", 11, "authorized_keys"},
		{"bad bastion", "    roles: [control-plane, etcd]", "    roles: [control-plane, etcd]\n    bastions: [{address: 'bad host'}]", "spec.hosts[0].bastions[0].address", 11, "neither an IP"},
		{"dns name without internal address", "10.77.0.12", "w1.example.com", "spec.hosts[1].internalAddress", 0, "required when address"},
		{"invalid pod CIDR", "10.244.0.0/16", "10.244.0.0/33", "spec.network.podCIDR", 18, "not a CIDR"},
		{"CIDR with host bits", "10.244.0.0/16", "10.244.1.0/16", "spec.network.podCIDR", 18, "host bits"},
		{"pod and service overlap", "10.96.0.0/12", "10.244.128.0/20", "spec.network.serviceCIDR", 19, "overlaps podCIDR"},
		{"pod CIDR holds hosts", "10.244.0.0/16", "10.0.0.0/8", "spec.network.podCIDR", 18, "contains the address 10.77.0.11"},
		{"service CIDR too large", "10.96.0.0/12", "100.0.0.0/8", "spec.network.serviceCIDR", 19, "too large"},
		{"DNS outside service CIDR", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    clusterDNS: 10.200.0.10", "spec.network.clusterDNS", 20, "outside serviceCIDR"},
		{"DNS on kubernetes service IP", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    clusterDNS: 10.96.0.1", "spec.network.clusterDNS", 20, "kubernetes Service"},
		{"DNS not an IP", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    clusterDNS: dns", "spec.network.clusterDNS", 20, "not an IP"},
		{"bad DNS domain", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    dnsDomain: Cluster_Local", "spec.network.dnsDomain", 20, "DNS domain"},
		{"unknown network plugin", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    plugin: calico", "spec.network.plugin", 20, "unknown pod network"},
		{"node mask too short", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    nodeCIDRMaskSize: 16", "spec.network.nodeCIDRMaskSize", 20, "longer than"},
		{"bad endpoint", "  hosts:", "  controlPlaneEndpoint: api.example.com\n  hosts:", "spec.controlPlaneEndpoint", 7, "host:port"},
		{"zero concurrency", "", "  ssh:\n    concurrency: -1", "spec.ssh.concurrency", 21, "at least 1"},
		{"bad duration", "", "  ssh:\n    connectTimeout: 5 seconds", "spec.ssh.connectTimeout", 21, "invalid duration"},
		{"duration as number", "", "  ssh:\n    connectTimeout: 5", "spec.ssh.connectTimeout", 21, "duration string"},
		{"bad sudo env", "", "  ssh:\n    sudo: {passwordEnv: 'my-pass'}", "spec.ssh.sudo.passwordEnv", 21, "environment variable"},
		{"load balancer on the API server's port", "  network:", "  apiLoadBalancer:\n    port: 6442\n  network:", "spec.apiLoadBalancer.port", 18, "port 6443 is used"},
		{"load balancer on a privileged port", "  network:", "  apiLoadBalancer:\n    port: 443\n  network:", "spec.apiLoadBalancer.port", 18, "1024 to 65534"},
		{"unknown policy engine", "    serviceCIDR: 10.96.0.0/12", "    serviceCIDR: 10.96.0.0/12\n    policy: calico", "spec.network.policy", 20, "use kube-router or none"},
		{"kube-router with ipvs", "  network:", "  kubeProxy:\n    mode: ipvs\n  network:", "spec.network.policy", 19, "ipvs"},
		{"relative etcd dir", "", "  etcd:\n    dataDir: var/lib/etcd", "spec.etcd.dataDir", 21, "absolute"},
		{"kata default without kata", "", "  containerd:\n    defaultRuntime: kata", "spec.containerd.defaultRuntime", 21, "not an available runtime"},
		{"bad mirror URL", "", "  containerd:\n    registryMirrors: [{registry: docker.io, endpoints: [ftp://m]}]", "spec.containerd.registryMirrors[0].endpoints[0]", 21, "URL"},
		{"bad kata overhead", "", "  containerd:\n    kata: {enabled: true, overheadMemory: lots}", "spec.containerd.kata.overheadMemory", 21, "quantity"},
		{"bad cgroup driver", "", "  kubelet:\n    cgroupDriver: cgroupv2", "spec.kubelet.cgroupDriver", 21, "systemd or cgroupfs"},
		{"failCgroupV1 not bool", "", "  kubelet:\n    failCgroupV1: maybe", "spec.kubelet.failCgroupV1", 21, "true or false"},
		{"unknown eviction signal", "", "  kubelet:\n    evictionHard: {disk.free: 1%}", "spec.kubelet.evictionHard.disk.free", 21, "not an eviction signal"},
		{"bad eviction threshold", "", "  kubelet:\n    evictionHard: {nodefs.available: 150%}", "spec.kubelet.evictionHard.nodefs.available", 21, "percentage"},
		{"eviction threshold not a quantity", "", "  kubelet:\n    evictionHard: {memory.available: lots}", "spec.kubelet.evictionHard.memory.available", 21, "quantity"},
		{"bad proxy mode", "", "  kubeProxy:\n    mode: userspace", "spec.kubeProxy.mode", 21, "iptables"},
		{"negative conntrack", "", "  kubeProxy:\n    conntrack: {maxPerCore: -1}", "spec.kubeProxy.conntrack.maxPerCore", 21, "negative"},
		{"zero coredns replicas", "", "  addons:\n    coredns: {replicas: -2}", "spec.addons.coredns.replicas", 21, "at least 1"},
		{"bad upstream", "", "  addons:\n    coredns: {upstreams: [dns.google]}", "spec.addons.coredns.upstreams[0]", 21, "IP"},
		{"macvlan without master", "", "  addons:\n    multus:\n      networks: [{name: storage, type: macvlan, subnet: 192.168.50.0/24}]", "spec.addons.multus.networks[0].master", 22, "host interface"},
		{"unknown attachment type", "", "  addons:\n    multus:\n      networks: [{name: storage, type: sriov, subnet: 192.168.50.0/24}]", "spec.addons.multus.networks[0].type", 22, "macvlan or bridge"},
		{"static ipam bad address", "", "  addons:\n    multus:\n      networks: [{name: s, type: bridge, ipam: static, addresses: [192.168.50.10]}]", "spec.addons.multus.networks[0].addresses[0]", 22, "CIDR notation"},
		{"quay without hostname", "", "  addons:\n    quay: {enabled: true}", "spec.addons.quay.hostname", 21, "DNS name"},
		{"mirror without quay", "", "  addons:\n    quay: {useAsMirror: true}", "spec.addons.quay.useAsMirror", 21, "needs quay.enabled"},
		{"bad key algorithm", "", "  pki:\n    keyAlgorithm: dsa", "spec.pki.keyAlgorithm", 21, "ecdsa-p256"},
		{"leaf outlives CA", "", "  pki:\n    certValidity: 100000h\n    caValidity: 8760h", "spec.pki.certValidity", 21, "outlives the CA"},
		{"bad extra SAN", "", "  pki:\n    extraSANs: ['not a name']", "spec.pki.extraSANs[0]", 21, "neither an IP"},
		{"hosts not a list", "  hosts:\n  - name: cp1\n    address: 10.77.0.11\n    roles: [control-plane, etcd]\n  - name: w1\n    address: 10.77.0.12\n    roles: [worker]\n  - name: w2\n    address: 10.77.0.13\n    roles: [worker]\n", "  hosts: cp1\n", "spec.hosts", 7, "expected a list"},
	}
	if len(cases) < 30 {
		t.Fatalf("the table must hold at least 30 invalid configurations, has %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := base + tc.new + "\n"
			if tc.old != "" {
				doc = replace(t, tc.old, tc.new)
			}
			_, err := load(t, doc)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v\n--- document:\n%s", err, doc)
			}
			if ve.File != "cluster.yaml" {
				t.Errorf("error does not name the file: %q", ve.File)
			}
			for _, fe := range ve.Errors {
				if fe.Path != tc.path {
					continue
				}
				if !strings.Contains(fe.Msg, tc.msg) {
					t.Errorf("%s: message %q does not say %q", fe.Path, fe.Msg, tc.msg)
				}
				if tc.line != 0 && fe.Line != tc.line {
					t.Errorf("%s: line %d, want %d", fe.Path, fe.Line, tc.line)
				}
				return
			}
			t.Errorf("no error at %s; got:\n%v", tc.path, ve)
		})
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	doc := replace(t, "10.77.0.12", "10.77.0.999")
	doc = strings.Replace(doc, "podCIDR: 10.244.0.0/16", "podCIDR: bogus", 1)
	doc = strings.Replace(doc, "v1.37.2", "latest", 1)
	_, err := load(t, doc)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	want := []string{"spec.kubernetesVersion", "spec.hosts[1].address", "spec.network.podCIDR"}
	got := strings.Join(ve.Paths(), ",")
	for _, p := range want {
		if !strings.Contains(got, p) {
			t.Errorf("missing %s in %s", p, got)
		}
	}
}

func TestDecodeRejectsNonDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          "",
		"not a mapping":  "- a\n- b\n",
		"two documents":  base + "---\n" + base,
		"malformed yaml": "apiVersion: [\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Decode([]byte(doc))
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Errors[0].Path != "(document)" {
				t.Fatalf("want a document-level error, got %v", err)
			}
		})
	}
}

func TestStringsStayStrings(t *testing.T) {
	// YAML 1.1 would read "on" as a boolean; the loader follows YAML 1.2, so a label value stays a string.
	c, err := load(t, replace(t, "    roles: [worker]\n  - name: w2", "    roles: [worker]\n    labels: {power: on, zone: \"1\"}\n  - name: w2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Spec.Hosts[1].Labels["power"]; got != "on" {
		t.Errorf("label power = %q, want \"on\"", got)
	}
	_, err = load(t, replace(t, "    roles: [worker]\n  - name: w2", "    roles: [worker]\n    labels: {zone: 1}\n  - name: w2"))
	if err == nil || !strings.Contains(err.Error(), "quote it") {
		t.Errorf("an unquoted number as a label value must be refused with a hint, got %v", err)
	}
}

func TestEtcdRoleDefaultsToControlPlanes(t *testing.T) {
	c, err := load(t, replace(t, "roles: [control-plane, etcd]", "roles: [control-plane]"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Spec.Hosts[0].HasRole(RoleEtcd) || c.Spec.Hosts[1].HasRole(RoleEtcd) {
		t.Errorf("etcd role must default to control-plane hosts only: %+v", c.Spec.Hosts)
	}
}

func TestDefaultsArePureAndIdempotent(t *testing.T) {
	a, b := Example(), Example()
	SetDefaults(b)
	if CommentedYAML(a) != CommentedYAML(b) {
		t.Error("applying defaults twice changed the result")
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	doc := strings.Replace(base, "  - name: w1\n    address: 10.77.0.12\n    roles: [worker]\n",
		"  - &worker\n    name: w1\n    address: 10.77.0.12\n    roles: [worker]\n    labels: {tier: a}\n", 1)
	doc = strings.Replace(doc, "  - name: w2\n    address: 10.77.0.13\n    roles: [worker]\n",
		"  - <<: *worker\n    name: w2\n    address: 10.77.0.13\n", 1)
	c, err := load(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Hosts[2].Labels["tier"] != "a" || !c.Spec.Hosts[2].HasRole(RoleWorker) {
		t.Errorf("merge key not applied: %+v", c.Spec.Hosts[2])
	}
}
