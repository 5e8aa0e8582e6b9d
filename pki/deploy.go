package pki

import (
	"os"
	"path"
	"slices"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// Where files go on hosts: the layout kubeadm uses, so operators and tools find them where they expect.
const (
	RemotePKIDir  = "/etc/kubernetes/pki"
	RemoteConfDir = "/etc/kubernetes"
)

// Deployment is one file of the store that a host needs.
type Deployment struct {
	Entry  string      // the tree entry it belongs to: "apiserver/cp1", "kubeconfig/kubelet-w1"
	Source string      // path in the local store
	Target string      // path on the host
	Mode   os.FileMode // 0600 for keys and kubeconfigs
	Units  []string    // systemd units that read it, restarted when it changes
}

// The systemd units of the node-local API load balancer, the NetworkPolicy firewall and the pod network.
const (
	APILoadBalancerUnit = "privcloud-api-lb"
	KubeRouterUnit      = "privcloud-kube-router"
	FlannelUnit         = "privcloud-flannel"
	MetricsUnit         = "privcloud-metrics"
)

// Deployments lists the files host h needs for its roles, and only those: a worker never receives a CA key,
// an etcd member only its own server and peer certificates.
func Deployments(s Store, t *Tree, h api.Host) []Deployment {
	var out []Deployment
	add := func(entry, source, target string, mode os.FileMode, units ...string) {
		for i := range out {
			if out[i].Target == target {
				for _, u := range units {
					if !slices.Contains(out[i].Units, u) {
						out[i].Units = append(out[i].Units, u)
					}
				}
				return
			}
		}
		out = append(out, Deployment{Entry: entry, Source: source, Target: target, Mode: mode, Units: units})
	}
	pair := func(entry, remote string, units ...string) {
		add(entry, s.CertPath(entry), path.Join(RemotePKIDir, remote+".crt"), 0o644, units...)
		add(entry, s.KeyPath(entry), path.Join(RemotePKIDir, remote+".key"), 0o600, units...)
	}
	cert := func(entry, remote string, units ...string) {
		add(entry, s.CertPath(entry), path.Join(RemotePKIDir, remote+".crt"), 0o644, units...)
	}
	conf := func(name, remote string, units ...string) {
		add("kubeconfig/"+name, s.KubeconfigPath(name), path.Join(RemoteConfDir, remote), 0o600, units...)
	}
	const (
		apiserver = "kube-apiserver"
		cm        = "kube-controller-manager"
		scheduler = "kube-scheduler"
		etcd      = "etcd"
		kubelet   = "kubelet"
		proxy     = "kube-proxy"
	)
	if h.IsNode() {
		cert(ClusterCA, "ca", kubelet)
		pair(KubeletServingCert(h.Name), "kubelet", kubelet)
		conf("kubelet-"+h.Name, "kubelet.conf", kubelet)
		conf("kube-proxy", "kube-proxy.conf", proxy)
		if t.NetworkPolicy {
			conf(KubeRouterKubeconfig, "kube-router.conf", KubeRouterUnit)
		}
		if t.Flannel {
			conf(FlannelKubeconfig, "flannel.conf", FlannelUnit)
		}
		if t.Multus {
			conf(MultusKubeconfig, MultusConf) // no unit: the plugin reads it at every pod's start
		}
		if t.APILoadBalancer {
			cert(ClusterCA, "ca", APILoadBalancerUnit)
			pair(APILoadBalancerCert, APILoadBalancerCert, APILoadBalancerUnit)
		}
	}
	if h.HasRole(api.RoleControlPlane) {
		pair(ClusterCA, "ca", apiserver, cm) // the controller-manager signs kubelet serving certificates
		// with the certificate of the key alone: its signer refuses a file of two, as ca.crt holds while the CA
		// is replaced
		add(ClusterCA+"-signer", s.SignerCertPath(ClusterCA), path.Join(RemotePKIDir, "ca-signer.crt"), 0o644, cm)
		pair(APIServerCert(h.Name), "apiserver", apiserver)
		pair("apiserver-kubelet-client", "apiserver-kubelet-client", apiserver)
		cert(FrontProxyCA, "front-proxy-ca", apiserver, cm) // the controller-manager authenticates front-proxy requests too
		pair("front-proxy-client", "front-proxy-client", apiserver)
		cert(EtcdCA, "etcd/ca", apiserver)
		pair("apiserver-etcd-client", "apiserver-etcd-client", apiserver)
		add(ServiceAccountKey, s.KeyPath(ServiceAccountKey), path.Join(RemotePKIDir, "sa.key"), 0o600, apiserver, cm)
		add(ServiceAccountKey, s.PublicKeyPath(ServiceAccountKey), path.Join(RemotePKIDir, "sa.pub"), 0o644, apiserver)
		conf("controller-manager", "controller-manager.conf", cm)
		conf("scheduler", "scheduler.conf", scheduler)
		conf("admin", "admin.conf")
		if t.EncryptSecrets {
			add(EncryptionConfig, s.EncryptionConfigPath(), path.Join(RemoteConfDir, EncryptionConfig+".yaml"), 0o600, apiserver)
		}
	}
	if t.Monitoring {
		cert(ClusterCA, "ca", MetricsUnit)
		pair(MetricsCert(h.Name), "metrics", MetricsUnit)
	}
	if h.HasRole(api.RoleEtcd) {
		cert(EtcdCA, "etcd/ca", etcd)
		pair("etcd/server-"+h.Name, "etcd/server", etcd)
		pair("etcd/peer-"+h.Name, "etcd/peer", etcd)
		pair("etcd/healthcheck-client", "etcd/healthcheck-client")
	}
	return out
}

// Units returns the units that read any of the deployments, in a stable order.
func Units(ds []Deployment) []string {
	var out []string
	for _, d := range ds {
		for _, u := range d.Units {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	slices.Sort(out)
	return out
}
