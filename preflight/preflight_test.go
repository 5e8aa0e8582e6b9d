package preflight

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

func healthy(host string) Facts {
	return Facts{Host: host, OS: "debian 12", Kernel: "6.1.0", Arch: "x86_64", Hostname: host, MachineID: "id-" + host,
		CPUs: 2, MemoryBytes: 4 << 30, DiskFreeBytes: 50 << 30, CgroupVersion: 2, Systemd: true, KVM: true, KataShim: true, IPSet: true, VXLAN: "yes"}
}

func TestCheck(t *testing.T) {
	c := api.Example() // cp1 control plane, worker1, worker2; failCgroupV1 true
	base := []Facts{healthy("cp1"), healthy("worker1"), healthy("worker2")}
	if got := Check(c, base); len(got) != 0 {
		t.Fatalf("healthy hosts gave findings: %+v", got)
	}
	cases := []struct {
		name   string
		mutate func(c *api.Cluster, f []Facts)
		host   string
		check  string
		sev    Severity
	}{
		{"swap", func(_ *api.Cluster, f []Facts) { f[1].SwapBytes = 1 << 30 }, "worker1", "swap", Error},
		{"no systemd", func(_ *api.Cluster, f []Facts) { f[0].Systemd = false }, "cp1", "systemd", Error},
		{"arch", func(_ *api.Cluster, f []Facts) { f[2].Arch = "riscv64" }, "worker2", "arch", Error},
		{"cgroup v1", func(_ *api.Cluster, f []Facts) { f[0].CgroupVersion = 1 }, "cp1", "cgroups", Error},
		{"clock far off", func(_ *api.Cluster, f []Facts) { f[1].ClockSkew = -time.Minute }, "worker1", "clock", Error},
		{"clock a bit off", func(_ *api.Cluster, f []Facts) { f[1].ClockSkew = 5 * time.Second }, "worker1", "clock", Warning},
		{"kata without its runtime", func(c *api.Cluster, f []Facts) { c.Spec.Containerd.Kata.Enabled = true; f[1].KataShim = false }, "worker1", "kata", Warning},
		{"kata without kvm", func(c *api.Cluster, f []Facts) { c.Spec.Containerd.Kata.Enabled = true; f[2].KVM = false }, "worker2", "kvm", Warning},
		{"small control plane", func(_ *api.Cluster, f []Facts) { f[0].MemoryBytes = 1 << 30 }, "cp1", "memory", Warning},
		{"low disk", func(_ *api.Cluster, f []Facts) { f[2].DiskFreeBytes = 1 << 30 }, "worker2", "disk", Warning},
		{"no ipset for the NetworkPolicy firewall", func(_ *api.Cluster, f []Facts) { f[1].IPSet = false }, "worker1", "ipset", Error},
		{"no VXLAN for flannel", func(_ *api.Cluster, f []Facts) { f[2].VXLAN = "no" }, "worker2", "vxlan", Error},
		{"a running bridge network under the flannel default", func(_ *api.Cluster, f []Facts) { f[1].PodNetwork = "bridge" }, "worker1", "pod-network", Error},
		{"VXLAN support unknown", func(_ *api.Cluster, f []Facts) { f[2].VXLAN = "unknown" }, "worker2", "vxlan", Warning},
		// worker2 sits on another subnet: the bridge network cannot reach its pods from cp1
		{"bridge across subnets", func(c *api.Cluster, f []Facts) {
			c.Spec.Network.Plugin = api.NetworkBridge
			f[0].Subnets = []string{"192.168.10.11/24"}
			c.Spec.Hosts[2].InternalAddress = "192.168.20.13"
		}, "cp1", "pod-network", Error},
		// a running cluster keeps its networks and its Secrets' encryption
		{"a running cluster's Service range changed", func(_ *api.Cluster, f []Facts) { f[0].Running.ServiceCIDR = "10.97.0.0/16" }, "cp1", "running-cluster", Error},
		{"a running node's cluster DNS address changed", func(_ *api.Cluster, f []Facts) { f[1].Running.ClusterDNS = "10.96.0.99" }, "worker1", "running-cluster", Error},
		{"encryption of Secrets switched off", func(c *api.Cluster, f []Facts) {
			c.Spec.APIServer.EncryptSecrets = new(bool)
			f[0].APIServer, f[0].Running = "ready", RunningSettings{EncryptsSecrets: true}
		}, "cp1", "running-cluster", Error},
		{"encryption of Secrets turned on for a running cluster", func(_ *api.Cluster, f []Facts) { f[0].APIServer = "ready" }, "cp1", "running-cluster", Warning},
		{"an etcd member whose host lost the etcd role", func(_ *api.Cluster, f []Facts) { f[1].Etcd = "healthy" }, "worker1", "roles", Error},
		{"cloned machine id", func(_ *api.Cluster, f []Facts) { f[2].MachineID = f[1].MachineID }, "", "machine-id", Error},
		{"same hostname", func(_ *api.Cluster, f []Facts) { f[2].Hostname = "localhost"; f[1].Hostname = "localhost" }, "", "hostname", Warning},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := api.Example()
			f := append([]Facts(nil), base...)
			tc.mutate(c, f)
			got := Check(c, f)
			if len(got) != 1 || got[0].Host != tc.host || got[0].Check != tc.check || got[0].Severity != tc.sev {
				t.Fatalf("findings %+v, want one %s %s on %q", got, tc.sev, tc.check, tc.host)
			}
			if HasErrors(got) != (tc.sev == Error) {
				t.Error("HasErrors disagrees with the severity")
			}
		})
	}
	// the bridge network on one segment, and flannel on any, are fine; VXLAN matters to flannel alone
	for _, plugin := range []string{api.NetworkBridge, api.NetworkFlannel} {
		c := api.Example()
		c.Spec.Network.Plugin = plugin
		f := append([]Facts(nil), base...)
		for i := range f {
			f[i].Subnets = []string{"192.168.10.0/24"}
		}
		if plugin == api.NetworkBridge {
			f[1].VXLAN = "no"
		} else {
			c.Spec.Hosts[2].InternalAddress = "192.168.20.13"
		}
		if got := Check(c, f); len(got) != 0 {
			t.Errorf("%s: %+v", plugin, got)
		}
	}
	// a running cluster set up as cluster.yaml says is fine
	running := append([]Facts(nil), base...)
	n := c.Spec.Network
	running[0].Running = RunningSettings{PodCIDR: n.PodCIDR, NodeCIDRMaskSize: strconv.Itoa(n.NodeCIDRMaskSize), ServiceCIDR: n.ServiceCIDR,
		ClusterDNS: n.ClusterDNS, DNSDomain: n.DNSDomain, EncryptsSecrets: true}
	running[0].APIServer = "ready"
	if got := Check(c, running); len(got) != 0 {
		t.Errorf("a running cluster as cluster.yaml says: %+v", got)
	}
	// cgroup v1 is fine once the kubelet is told so
	c.Spec.Kubelet.FailCgroupV1 = new(bool)
	f := append([]Facts(nil), base...)
	f[0].CgroupVersion = 1
	if got := Check(c, f); len(got) != 0 {
		t.Errorf("failCgroupV1: false must accept cgroup v1: %+v", got)
	}
}

func TestGatherParses(t *testing.T) {
	h := sshtest.NewFake("cp1")
	now := time.Now().Add(10 * time.Second).UnixNano()
	out := "os=debian 12\nkernel=6.1.0-18-amd64\narch=x86_64\nhostname=cp1\nmachineid=abc\ncpus=4\nmemkb=8000000\nswapkb=1000\nswaps=0\ndiskkb=100\ncgroupfs=cgroup2fs\nsystemd=yes\nkatashim=yes\n" +
		"running.cluster-cidr=10.244.0.0/16\nrunning.service-cluster-ip-range=10.96.0.0/12\nrunning.cluster-dns=10.96.0.10\nrunning.encryption=yes\ntime=" + strconv.FormatInt(now, 10) + "\n"
	h.OnCommand("os=unknown", ssh.Result{Stdout: []byte(out)}, nil)
	f, err := Gather(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if f.OS != "debian 12" || f.CPUs != 4 || f.MemoryBytes != 8000000*1024 || f.SwapBytes != 0 || f.CgroupVersion != 2 || !f.Systemd || f.KVM {
		t.Errorf("facts = %+v", f)
	}
	if !f.KataShim {
		t.Error("katashim=yes not read")
	}
	if want := (RunningSettings{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ClusterDNS: "10.96.0.10", EncryptsSecrets: true}); f.Running != want {
		t.Errorf("running settings %+v, want %+v", f.Running, want)
	}
	if f.ClockSkew < 9*time.Second || f.ClockSkew > 11*time.Second {
		t.Errorf("skew %s, want about 10s", f.ClockSkew)
	}
	if !strings.Contains(h.Commands()[0], "/proc/meminfo") {
		t.Error("the fact script was not run")
	}
}

// TestRunningClusterHealth: etcd without quorum and a cluster without a ready API server stop a run, naming
// every host's state; one member or one API server down is a warning naming it; hosts without them count for
// nothing.
func TestRunningClusterHealth(t *testing.T) {
	c := &api.Cluster{Spec: api.ClusterSpec{Hosts: []api.Host{
		{Name: "h1", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "h4", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "h5", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
		{Name: "h2", Roles: []api.Role{api.RoleWorker}},
	}}}
	running := func(etcd ...string) []Facts {
		var out []Facts
		for i, h := range []string{"h1", "h4", "h5"} {
			f := healthy(h)
			f.Etcd, f.APIServer = etcd[i], "ready"
			out = append(out, f)
		}
		return append(out, healthy("h2"))
	}
	one := func(fs []Finding) Finding {
		t.Helper()
		if len(fs) != 1 {
			t.Fatalf("findings %+v, want one", fs)
		}
		return fs[0]
	}
	if got := Check(c, running("healthy", "healthy", "healthy")); len(got) != 0 {
		t.Errorf("a healthy cluster: %+v", got)
	}
	// a fresh cluster: nothing installed yet
	fresh := []Facts{healthy("h1"), healthy("h4"), healthy("h5"), healthy("h2")}
	if got := Check(c, fresh); len(got) != 0 {
		t.Errorf("fresh hosts: %+v", got)
	}
	f := one(Check(c, running("healthy", "not running (inactive)", "healthy")))
	if f.Check != "etcd" || f.Severity != Warning || !strings.Contains(f.Message, "h4: not running (inactive)") || !strings.Contains(f.Message, "2 of 3 healthy, quorum kept") {
		t.Errorf("one member down: %+v", f)
	}
	f = one(Check(c, running("unhealthy: context deadline exceeded", "not running (inactive)", "not running (failed)")))
	if f.Check != "etcd-quorum" || f.Severity != Error || !strings.Contains(f.Message, "etcd has lost quorum: 0 of 3 members healthy, 2 needed") ||
		!strings.Contains(f.Message, "h1: unhealthy: context deadline exceeded; h4: not running (inactive); h5: not running (failed)") {
		t.Errorf("quorum lost: %+v", f)
	}
	// h1 did not answer at all (its host is gone): a member down, the two others keep quorum
	f = one(Check(c, running("healthy", "healthy", "healthy")[1:]))
	if f.Severity != Warning || !strings.Contains(f.Message, "h1: unreachable") {
		t.Errorf("an unreachable member: %+v", f)
	}
	fs := running("healthy", "healthy", "healthy")
	fs[0].APIServer = "not running (inactive)"
	f = one(Check(c, fs))
	if f.Check != "apiserver" || f.Severity != Warning || !strings.Contains(f.Message, "h1: not running (inactive)") || !strings.Contains(f.Message, "(h4, h5)") {
		t.Errorf("one API server down: %+v", f)
	}
	fs[1].APIServer, fs[2].APIServer = "not ready: [-]etcd failed", "not ready: [-]etcd failed"
	if f = one(Check(c, fs)); f.Severity != Error || !strings.Contains(f.Message, "no API server is ready") {
		t.Errorf("no API server ready: %+v", f)
	}
}

func TestSameSetting(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{{"fd00:0::a", "fd00::a", true}, {"fd10:0::/56", "fd10::/56", true}, {"10.96.0.0/12", "10.96.0.0/12", true}, {"10.96.0.0/12", "10.97.0.0/16", false},
		{"10.96.0.10", "10.96.0.11", false}, {"24", "24", true}, {"cluster.local", "lab.local", false}} {
		if got := sameSetting(c.a, c.b); got != c.same {
			t.Errorf("sameSetting(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// The running cluster's settings are read from the files privcloud's templates write: here their pinned
// output (the templates package's golden files) stands in for a host's, and the script itself runs.
func TestRunningScriptReadsTheTemplates(t *testing.T) {
	dir := t.TempDir()
	for src, dst := range map[string]string{"TestControllerManagerService.golden": "kube-controller-manager.service",
		"TestAPIServerService.golden": "kube-apiserver.service", "TestNodeFiles__kubelet-config.yaml.golden": "config.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "templates", "testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.NewReplacer("/etc/systemd/system/", dir+"/", "/var/lib/kubelet/", dir+"/").Replace(runningScript)
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kv := map[string]string{}
	addKeyValues(kv, out)
	for k, want := range map[string]string{"running.cluster-cidr": "10.244.0.0/16", "running.node-cidr-mask-size": "24",
		"running.service-cluster-ip-range": "10.96.0.0/12", "running.cluster-dns": "10.96.0.10", "running.cluster-domain": "cluster.local",
		"running.encryption": "yes"} {
		if kv[k] != want {
			t.Errorf("%s = %q, want %q; the script printed:\n%s", k, kv[k], want, out)
		}
	}
}
