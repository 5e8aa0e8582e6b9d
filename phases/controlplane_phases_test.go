package phases

import (
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/report"
)

// flags are the --name=value flags of a unit's ExecStart, by name.
func flags(unit string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSuffix(strings.TrimSpace(l), " \\")
		if f, ok := strings.CutPrefix(l, "--"); ok {
			k, v, _ := strings.Cut(f, "=")
			out[k] = v
		}
	}
	return out
}

// The control-plane phases write the three units (root's alone) on control planes only and restart each once; the API
// server is waited for on /readyz, the controller-manager and scheduler until someone holds their lease.
// A second run changes nothing.
func TestControlPlanePhases(t *testing.T) {
	c, hosts, ex, out, svc := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "control-plane"); err != nil {
		t.Fatal(err)
	}
	cp := hosts["cp1"]
	for _, u := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		path := "/etc/systemd/system/" + u + ".service"
		if _, mode, ok := cp.File(path); !ok || mode != 0o600 {
			t.Errorf("%s: present %v, mode %o", path, ok, mode)
		}
		for _, w := range []string{"worker1", "worker2"} {
			if _, _, ok := hosts[w].File(path); ok {
				t.Errorf("worker %s got %s", w, path)
			}
		}
	}
	if got := restarts(cp); !slices.Equal(got, []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}) {
		t.Errorf("restarted %q", got)
	}
	reqs := svc.api.requested()
	for _, want := range []string{"GET /readyz", "GET /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
		"GET /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("the phases did not wait on %s: %q", want, reqs)
		}
	}

	apiserver, _, _ := cp.File("/etc/systemd/system/kube-apiserver.service")
	f := flags(string(apiserver))
	for flag, want := range map[string]string{
		"secure-port":        "6443",
		"anonymous-auth":     "false",
		"authorization-mode": "Node,RBAC",
		"advertise-address":  "192.168.10.11",
		// a stacked control plane uses its own etcd member
		"etcd-servers":                 "https://127.0.0.1:2379",
		"client-ca-file":               "/etc/kubernetes/pki/ca.crt",
		"etcd-cafile":                  "/etc/kubernetes/pki/etcd/ca.crt",
		"service-cluster-ip-range":     c.Spec.Network.ServiceCIDR,
		"service-account-issuer":       "https://kubernetes.default.svc." + c.Spec.Network.DNSDomain,
		"tls-private-key-file":         "/etc/kubernetes/pki/apiserver.key",
		"kubelet-client-key":           "/etc/kubernetes/pki/apiserver-kubelet-client.key",
		"requestheader-client-ca-file": "/etc/kubernetes/pki/front-proxy-ca.crt",
	} {
		if f[flag] != want {
			t.Errorf("kube-apiserver --%s=%q, want %q", flag, f[flag], want)
		}
	}
	plugins := strings.Split(f["enable-admission-plugins"], ",")
	for _, p := range []string{"NodeRestriction", "NamespaceLifecycle", "ServiceAccount", "LimitRanger", "ResourceQuota", "RuntimeClass",
		"MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"} {
		if !slices.Contains(plugins, p) {
			t.Errorf("admission plugin %s is not enabled: %q", p, plugins)
		}
	}
	for _, flag := range []string{"insecure-port", "insecure-bind-address", "token-auth-file", "basic-auth-file"} {
		if _, ok := f[flag]; ok {
			t.Errorf("kube-apiserver has --%s", flag)
		}
	}
	if strings.Contains(f["authorization-mode"], "AlwaysAllow") || strings.Contains(f["enable-admission-plugins"], "AlwaysAdmit") {
		t.Error("kube-apiserver allows everything")
	}

	cm, _, _ := cp.File("/etc/systemd/system/kube-controller-manager.service")
	f = flags(string(cm))
	for flag, want := range map[string]string{
		"leader-elect": "true", "bind-address": "127.0.0.1", "cluster-name": c.Metadata.Name, "allocate-node-cidrs": "true",
		"cluster-cidr": c.Spec.Network.PodCIDR, "service-cluster-ip-range": c.Spec.Network.ServiceCIDR,
		"use-service-account-credentials": "true", "kubeconfig": "/etc/kubernetes/controller-manager.conf",
		"cluster-signing-key-file": "/etc/kubernetes/pki/ca.key", "service-account-private-key-file": "/etc/kubernetes/pki/sa.key",
	} {
		if f[flag] != want {
			t.Errorf("kube-controller-manager --%s=%q, want %q", flag, f[flag], want)
		}
	}
	sched, _, _ := cp.File("/etc/systemd/system/kube-scheduler.service")
	f = flags(string(sched))
	for flag, want := range map[string]string{"leader-elect": "true", "bind-address": "127.0.0.1", "kubeconfig": "/etc/kubernetes/scheduler.conf"} {
		if f[flag] != want {
			t.Errorf("kube-scheduler --%s=%q, want %q", flag, f[flag], want)
		}
	}

	if err := runPhases(t, Init(), c, ex, out, "control-plane"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 || len(restarts(cp)) != 3 {
		t.Errorf("a converged run changed %q, restarts %q", got, restarts(cp))
	}
	for _, p := range []string{"control-plane/apiserver", "control-plane/controller-manager", "control-plane/scheduler"} {
		if e := final(t, out, p, "cp1"); e.Status != report.OK {
			t.Errorf("converged %s: %s", p, e.Status)
		}
	}
}

// A new Service range changes the API server's and the controller-manager's flags: those two restart, the
// scheduler, whose unit does not name it, does not.
func TestControlPlaneRestartsOnlyChangedUnits(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "control-plane"); err != nil {
		t.Fatal(err)
	}
	c.Spec.Network.ServiceCIDR = "10.112.0.0/12"
	if err := runPhases(t, Init(), c, ex, out, "control-plane"); err != nil {
		t.Fatal(err)
	}
	want := []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "kube-controller-manager"}
	if got := restarts(hosts["cp1"]); !slices.Equal(got, want) {
		t.Errorf("restarts %q, want %q", got, want)
	}
	if e := final(t, out, "control-plane/scheduler", "cp1"); e.Status != report.OK {
		t.Errorf("scheduler: %s", e.Status)
	}
}

// A control plane without an etcd member of its own reaches every member over the network; one with a
// member uses only its own, so members joining or leaving restart no API server.
func TestAPIServerEtcdServers(t *testing.T) {
	spec := api.Example().Spec
	spec.Hosts = []api.Host{
		{Name: "cp1", InternalAddress: "10.0.0.1", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "cp2", InternalAddress: "10.0.0.2", Roles: []api.Role{api.RoleControlPlane}},
		{Name: "e1", InternalAddress: "10.0.0.3", Roles: []api.Role{api.RoleEtcd}},
		{Name: "e2", InternalAddress: "fd00::4", Roles: []api.Role{api.RoleEtcd}},
	}
	for _, tc := range []struct{ host, want string }{
		{"cp1", "https://127.0.0.1:2379"},
		{"cp2", "https://10.0.0.1:2379,https://10.0.0.3:2379,https://[fd00::4]:2379"},
	} {
		i := slices.IndexFunc(spec.Hosts, func(h api.Host) bool { return h.Name == tc.host })
		unit, err := apiServerUnit(spec, spec.Hosts[i], "v1.37.2")
		if err != nil {
			t.Fatal(err)
		}
		if got := flags(string(unit))["etcd-servers"]; got != tc.want {
			t.Errorf("%s: --etcd-servers=%s, want %s", tc.host, got, tc.want)
		}
		if !strings.Contains(string(unit), "kube-apiserver v1.37.2") || flags(string(unit))["advertise-address"] != spec.Hosts[i].InternalAddress {
			t.Errorf("%s: version or address missing:\n%s", tc.host, unit)
		}
	}
}
