package phases

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

// nodeFiles are the files of the node phases with their modes: units and the kubelet's configuration are
// root's alone.
var nodeFiles = map[string]fs.FileMode{"/var/lib/kubelet/config.yaml": 0o600, "/etc/systemd/system/kubelet.service": 0o600,
	"/var/lib/kube-proxy/config.yaml": 0o644, "/etc/systemd/system/kube-proxy.service": 0o600}

// Every node gets its own kubelet and kube-proxy files, each service is restarted once because its
// files are new, and the kubelet waits for its Node. A second run writes and restarts nothing.
func TestNodePhasesWriteEachHostsFilesAndConverge(t *testing.T) {
	c, hosts, ex, out, svc := liveCluster(t)
	w2 := &c.Spec.Hosts[2]
	w2.Labels = map[string]string{"zone": "b", "disk": "ssd"}
	w2.Taints = []api.Taint{{Key: "dedicated", Value: "storage", Effect: "NoSchedule"}}
	// worker1 runs systemd-resolved: its pods must get the real servers, not the 127.0.0.53 stub
	hosts["worker1"].SetFile("/etc/resolv.conf", []byte("nameserver 127.0.0.53\n"), 0o644)
	hosts["worker1"].SetFile("/run/systemd/resolve/resolv.conf", []byte("nameserver 192.168.10.1\n"), 0o644)

	if err := runPhases(t, Init(), c, ex, out, "node"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		f := hosts[h.Name]
		for p, want := range nodeFiles {
			if _, mode, ok := f.File(p); !ok || mode != want {
				t.Errorf("%s: %s present %v, mode %o; want %o", h.Name, p, ok, mode, want)
			}
		}
		unit, _, _ := f.File("/etc/systemd/system/kubelet.service")
		cfg, _, _ := f.File("/var/lib/kubelet/config.yaml")
		proxy, _, _ := f.File("/var/lib/kube-proxy/config.yaml")
		for _, want := range []string{"--hostname-override=" + h.Name + " ", "--node-ip=" + h.InternalAddress, "--kubeconfig=/etc/kubernetes/kubelet.conf",
			"kubelet " + c.Spec.KubernetesVersion + " on " + h.Name} {
			if !strings.Contains(string(unit), want) {
				t.Errorf("%s: kubelet.service lacks %q:\n%s", h.Name, want, unit)
			}
		}
		for _, want := range []string{"clusterDNS:\n- " + c.Spec.Network.ClusterDNS + "\n", "anonymous:\n    enabled: false", "authorization:\n  mode: Webhook",
			"clientCAFile: /etc/kubernetes/pki/ca.crt", "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock"} {
			if !strings.Contains(string(cfg), want) {
				t.Errorf("%s: kubelet config lacks %q:\n%s", h.Name, want, cfg)
			}
		}
		if !strings.Contains(string(proxy), "hostnameOverride: "+h.Name+"\n") || !strings.Contains(string(proxy), "kubeconfig: /etc/kubernetes/kube-proxy.conf") {
			t.Errorf("%s: kube-proxy config:\n%s", h.Name, proxy)
		}
		if got := restarts(f); !slices.Equal(got, []string{"privcloud-api-lb", "kubelet", "kube-proxy"}) {
			t.Errorf("%s restarted %q, want the API load balancer, the kubelet and kube-proxy once each", h.Name, got)
		}
		if e := final(t, out, "node/kubelet", h.Name); e.Status != report.Changed {
			t.Errorf("%s: node/kubelet %s", h.Name, e.Status)
		}
	}
	resolv := func(host string) string {
		cfg, _, _ := hosts[host].File("/var/lib/kubelet/config.yaml")
		_, v, _ := strings.Cut(string(cfg), "resolvConf: ")
		v, _, _ = strings.Cut(v, "\n")
		return v
	}
	if resolv("worker1") != "/run/systemd/resolve/resolv.conf" || resolv("worker2") != "/etc/resolv.conf" {
		t.Errorf("resolvConf: worker1 %s, worker2 %s", resolv("worker1"), resolv("worker2"))
	}
	unit, _, _ := hosts["worker2"].File("/etc/systemd/system/kubelet.service")
	if !strings.Contains(string(unit), "--node-labels=disk=ssd,zone=b \\") || !strings.Contains(string(unit), "--register-with-taints=dedicated=storage:NoSchedule") {
		t.Errorf("worker2's labels (sorted) and taints:\n%s", unit)
	}
	if unit, _, _ := hosts["worker1"].File("/etc/systemd/system/kubelet.service"); strings.Contains(string(unit), "--node-labels") {
		t.Errorf("a host without labels got --node-labels:\n%s", unit)
	}
	var asked []string
	for _, r := range svc.api.requested() {
		if strings.HasPrefix(r, "GET /api/v1/nodes/") {
			asked = append(asked, strings.TrimPrefix(r, "GET /api/v1/nodes/"))
		}
	}
	slices.Sort(asked)
	if !slices.Equal(slices.Compact(asked), []string{"cp1", "worker1", "worker2"}) {
		t.Errorf("the kubelet phase waited for nodes %q", asked)
	}

	// converged: nothing written, nothing restarted, every host ok
	if err := runPhases(t, Init(), c, ex, out, "node"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 || summary(t, out).Changed != 0 {
		t.Errorf("a converged run changed %q", got)
	}
	for _, h := range c.Spec.Hosts {
		if got := restarts(hosts[h.Name]); len(got) != 3 {
			t.Errorf("%s: the converged run restarted again: %q", h.Name, got)
		}
		for _, p := range []string{"node/kubelet", "node/kube-proxy"} {
			if e := final(t, out, p, h.Name); e.Status != report.OK {
				t.Errorf("%s: converged %s is %s", h.Name, p, e.Status)
			}
		}
	}
}

// A change to the kubelet's configuration restarts the kubelet on every node and leaves kube-proxy alone; a
// kubelet that stopped by itself is started, not restarted.
func TestNodePhasesRestartOnlyWhatChanged(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "node"); err != nil {
		t.Fatal(err)
	}
	c.Spec.Kubelet.MaxPods = 55
	// worker2's kubelet is not running: the converged script starts it
	hosts["worker2"].OnCommandFunc(`s=$(systemctl show -p NeedDaemonReload`, func(cmd string) (ssh.Result, error) {
		if strings.Contains(cmd, "kubelet") {
			return ssh.Result{Stdout: []byte("started\n")}, nil
		}
		return ssh.Result{}, nil
	})
	if err := runPhases(t, Init(), c, ex, out, "node"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		if got := restarts(hosts[h.Name]); !slices.Equal(got, []string{"privcloud-api-lb", "kubelet", "kube-proxy", "kubelet"}) {
			t.Errorf("%s restarted %q: the kubelet again, kube-proxy not", h.Name, got)
		}
		if cfg, _, _ := hosts[h.Name].File("/var/lib/kubelet/config.yaml"); !strings.Contains(string(cfg), "maxPods: 55\n") {
			t.Errorf("%s: maxPods not written:\n%s", h.Name, cfg)
		}
	}
	want := []string{}
	for _, h := range c.Spec.Hosts {
		want = append(want, "node/kubelet "+h.Name+" /var/lib/kubelet/config.yaml", "node/kubelet "+h.Name+" kubelet restarted")
	}
	got := changes(t, out)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("changes\n%q\nwant\n%q", got, want)
	}

	if err := runPhases(t, Init(), c, ex, out, "node/kubelet"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); !slices.Equal(got, []string{"node/kubelet worker2 kubelet started"}) {
		t.Errorf("changes %q, want worker2's kubelet started", got)
	}
}

// ensureService's script for a host whose files did not change, run against a stubbed systemd: it reloads
// only when systemd asks for it, enables what is disabled, starts what is stopped and prints only what it did.
func TestEnsureServiceConvergedScript(t *testing.T) {
	cl, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), cl, ex, out, "node/kube-proxy"); err != nil {
		t.Fatal(err)
	}
	if err := runPhases(t, Init(), cl, ex, out, "node/kube-proxy"); err != nil {
		t.Fatal(err)
	}
	script := commandsLike(hosts["worker1"], `s=$(systemctl show`)
	if len(script) != 1 {
		t.Fatalf("the converged run ran %q", hosts["worker1"].Commands())
	}
	const show = "systemctl show -p NeedDaemonReload -p UnitFileState -p ActiveState kube-proxy"
	for _, tc := range []struct {
		name                    string
		reload, enabled, active bool
		out                     string
		calls                   []string
	}{
		{"running", false, true, true, "", []string{show}},
		{"stopped", false, true, false, "started\n", []string{show, "systemctl start kube-proxy"}},
		{"disabled, unit file edited", true, false, true, "", []string{show, "systemctl daemon-reload", "systemctl enable -q kube-proxy"}},
		{"static, reloading", false, false, true, "", []string{show}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			for f, on := range map[string]bool{"reload": tc.reload, "enabled": tc.enabled, "active": tc.active} {
				if on {
					os.WriteFile(filepath.Join(state, f), nil, 0o644)
				}
			}
			if tc.name == "static, reloading" {
				os.WriteFile(filepath.Join(state, "static"), nil, 0o644)
			}
			// systemd prints the properties in an order of its own
			got := runStubbed(t, state, script[0], map[string]string{"systemctl": `case "$1" in
show)
  if [ -e "$STATE/active" ]; then
    if [ -e "$STATE/static" ]; then echo ActiveState=reloading; else echo ActiveState=active; fi
  else echo ActiveState=inactive; fi
  [ -e "$STATE/reload" ] && echo NeedDaemonReload=yes || echo NeedDaemonReload=no
  if [ -e "$STATE/enabled" ]; then echo UnitFileState=enabled
  elif [ -e "$STATE/static" ]; then echo UnitFileState=static
  else echo UnitFileState=disabled; fi;;
esac`})
			if got != tc.out || !slices.Equal(calls(state), tc.calls) {
				t.Errorf("printed %q, called\n%q\nwant %q,\n%q", got, calls(state), tc.out, tc.calls)
			}
		})
	}
}

// The restart after a changed file costs systemd one reload: the explicit one for an enabled unit, the one
// 'systemctl enable' makes by itself for a new one.
func TestRestartScriptReloadsOnce(t *testing.T) {
	script := hostops.LoadUnitScript("kube-proxy") + " && systemctl restart kube-proxy && echo restarted"
	for _, tc := range []struct {
		name    string
		enabled bool
		calls   []string
	}{
		{"enabled", true, []string{"systemctl is-enabled -q kube-proxy", "systemctl daemon-reload", "systemctl restart kube-proxy"}},
		{"new", false, []string{"systemctl is-enabled -q kube-proxy", "systemctl enable -q kube-proxy", "systemctl restart kube-proxy"}},
	} {
		state := t.TempDir()
		if tc.enabled {
			os.WriteFile(filepath.Join(state, "enabled"), nil, 0o644)
		}
		got := runStubbed(t, state, script, map[string]string{"systemctl": `[ "$1" != is-enabled ] || [ -e "$STATE/enabled" ]`})
		if got != "restarted\n" || !slices.Equal(calls(state), tc.calls) {
			t.Errorf("%s: printed %q, called %q, want %q", tc.name, got, calls(state), tc.calls)
		}
	}
}

// With the bridge pod network, the network phase writes each node's bridge configuration for the pod CIDR the
// controller-manager gave it and a routes unit to the other nodes' pod CIDRs; a node that joins later changes
// the others' routes.
func TestNetworkPhaseRoutesToTheOtherNodes(t *testing.T) {
	c, hosts, ex, out, svc := liveCluster(t)
	c.Spec.Network.Plugin = api.NetworkBridge
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	cidr := map[string]string{"cp1": "10.244.0.0/24", "worker1": "10.244.1.0/24", "worker2": "10.244.2.0/24"}
	for _, h := range c.Spec.Hosts {
		conf, mode, _ := hosts[h.Name].File("/etc/cni/net.d/10-privcloud.conflist")
		if mode != 0o644 || !strings.Contains(string(conf), `"ranges": [[{"subnet": "`+cidr[h.Name]+`"}]]`) {
			t.Errorf("%s: conflist (%o):\n%s", h.Name, mode, conf)
		}
		unit, mode, _ := hosts[h.Name].File("/etc/systemd/system/privcloud-pod-routes.service")
		if mode != 0o600 {
			t.Errorf("%s: the routes unit has mode %o, want 0600", h.Name, mode)
		}
		var routes []string
		for _, l := range strings.Split(string(unit), "\n") {
			if r, ok := strings.CutPrefix(l, "ExecStart=/sbin/ip route replace "); ok {
				routes = append(routes, r)
			}
		}
		var want []string
		for _, o := range c.Spec.Hosts {
			if o.Name != h.Name {
				want = append(want, cidr[o.Name]+" via "+o.InternalAddress+" proto 201")
			}
		}
		if !slices.Equal(routes, want) {
			t.Errorf("%s routes %q, want %q", h.Name, routes, want)
		}
		if got := restarts(hosts[h.Name]); !slices.Equal(got, []string{"privcloud-pod-routes"}) {
			t.Errorf("%s restarted %q", h.Name, got)
		}
	}
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 {
		t.Errorf("a converged run changed %q", got)
	}
	// a fourth node registers: every node routes to it, and only the routes unit restarts
	svc.api.addNode(api.Host{Name: "worker3", InternalAddress: "192.168.10.23"}, "10.244.3.0/24", true)
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		unit, _, _ := hosts[h.Name].File("/etc/systemd/system/privcloud-pod-routes.service")
		if !strings.Contains(string(unit), "ExecStart=/sbin/ip route replace 10.244.3.0/24 via 192.168.10.23 proto 201\n") {
			t.Errorf("%s has no route to the new node:\n%s", h.Name, unit)
		}
		if got := restarts(hosts[h.Name]); !slices.Equal(got, []string{"privcloud-pod-routes", "privcloud-pod-routes"}) {
			t.Errorf("%s restarted %q", h.Name, got)
		}
	}
}

// Every node's API load balancer lists every control plane's API server; when the list changes (a control plane
// moved, joined or left) the balancer is reloaded, not restarted, and the kubelet and kube-proxy reach the API
// through it.
func TestAPILoadBalancerFollowsTheControlPlanes(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "node"); err != nil {
		t.Fatal(err)
	}
	cp := &c.Spec.Hosts[0]
	for name, f := range hosts {
		conf, _, _ := f.File("/etc/kubernetes/api-lb.yaml")
		if !strings.Contains(string(conf), "listen: 127.0.0.1:6444\n") || !strings.Contains(string(conf), "backends:\n- \""+cp.InternalAddress+":6443\"") {
			t.Errorf("%s: api-lb.yaml:\n%s", name, conf)
		}
		for _, unit := range []string{"kubelet", "kube-proxy"} {
			if u, _, _ := f.File("/etc/systemd/system/" + unit + ".service"); !strings.Contains(string(u), "reaching the API at https://127.0.0.1:6444") ||
				!strings.Contains(string(u), "privcloud-api-lb.service") {
				t.Errorf("%s: %s.service does not go through the load balancer:\n%s", name, unit, u)
			}
		}
	}
	cp.InternalAddress = "10.0.0.99"
	if err := runPhases(t, Init(), c, ex, out, "node/api-lb"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		if got := restarts(f); !slices.Equal(got, []string{"privcloud-api-lb", "kubelet", "kube-proxy"}) {
			t.Errorf("%s: a new list of backends restarted %q", name, got)
		}
		if n := len(commandsLike(f, "systemctl reload privcloud-api-lb")); n != 1 {
			t.Errorf("%s: the load balancer was reloaded %d times, want once", name, n)
		}
		if conf, _, _ := f.File("/etc/kubernetes/api-lb.yaml"); !strings.Contains(string(conf), "- \"10.0.0.99:6443\"") {
			t.Errorf("%s: api-lb.yaml:\n%s", name, conf)
		}
	}
}

// With flannel (the default), every node runs flanneld on its own address and the pod CIDR, and gets the flannel
// CNI configuration only once flanneld holds its lease; a re-run changes nothing.
func TestNetworkPhaseRunsFlannel(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	early := map[string]bool{}
	var mu sync.Mutex // the hosts run at once; the re-run below finds every configuration in place
	for name, f := range hosts {
		f.OnCommandFunc("if test -s '/run/flannel/subnet.env'", func(string) (ssh.Result, error) {
			if _, _, ok := f.File("/etc/cni/net.d/10-privcloud.conflist"); ok {
				mu.Lock()
				early[name] = true
				mu.Unlock()
			}
			return ssh.Result{Stdout: []byte("ready\n")}, nil
		})
	}
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		f := hosts[h.Name]
		unit, mode, _ := f.File("/etc/systemd/system/privcloud-flannel.service")
		for _, want := range []string{"--kube-subnet-mgr", "--kubeconfig-file=/etc/kubernetes/flannel.conf", "--iface=" + h.InternalAddress + " ", "NODE_NAME=" + h.Name + "\n"} {
			if mode != 0o600 || !strings.Contains(string(unit), want) {
				t.Errorf("%s: flanneld's unit (%o) lacks %q:\n%s", h.Name, mode, want, unit)
			}
		}
		if conf, _, _ := f.File("/etc/kubernetes/flannel/net-conf.json"); !strings.Contains(string(conf), `"Network": "`+c.Spec.Network.PodCIDR+`"`) {
			t.Errorf("%s: net-conf.json:\n%s", h.Name, conf)
		}
		if conf, _, _ := f.File("/etc/cni/net.d/10-privcloud.conflist"); !strings.Contains(string(conf), `"type": "flannel"`) || early[h.Name] {
			t.Errorf("%s: the CNI configuration is not flannel's, or was written before flanneld held its lease:\n%s", h.Name, conf)
		}
		if _, _, ok := f.File("/etc/systemd/system/privcloud-pod-routes.service"); ok {
			t.Errorf("%s: flannel needs no routes unit", h.Name)
		}
		if got := restarts(f); !slices.Equal(got, []string{"privcloud-flannel"}) {
			t.Errorf("%s restarted %q", h.Name, got)
		}
	}
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 {
		t.Errorf("a converged run changed %q", got)
	}
}

// Every node runs the NetworkPolicy firewall (kube-router's, nothing else of it) and waits for its health;
// with spec.network.policy none it is removed where it ran, and nothing is installed.
func TestNetworkPolicyFirewallOnEveryNode(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "network-policy"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		unit, _, ok := f.File("/etc/systemd/system/privcloud-kube-router.service")
		for _, want := range []string{"--run-router=false", "--run-firewall=true", "--run-service-proxy=false", "--kubeconfig=/etc/kubernetes/kube-router.conf",
			"--hostname-override=" + name + " ", "--service-cluster-ip-range=" + c.Spec.Network.ServiceCIDR} {
			if !ok || !strings.Contains(string(unit), want) {
				t.Errorf("%s: the firewall's unit lacks %q:\n%s", name, want, unit)
			}
		}
		if got := restarts(f); !slices.Equal(got, []string{"privcloud-kube-router"}) {
			t.Errorf("%s restarted %q", name, got)
		}
	}
	// turned off, the firewall is stopped and removed with its rules and sets (on the fake hosts the script's
	// effects are not simulated: what it runs is checked)
	c.Spec.Network.Policy = "none"
	for _, f := range hosts {
		f.OnCommandFunc("test -e '/etc/systemd/system/privcloud-kube-router.service'", func(string) (ssh.Result, error) {
			if _, _, ok := f.File("/etc/systemd/system/privcloud-kube-router.service"); ok {
				return ssh.Result{Stdout: []byte("yes\n")}, nil
			}
			return ssh.Result{}, nil
		})
	}
	out.Reset()
	if err := runPhases(t, Init(), c, ex, out, "network-policy"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		cmds := f.Commands()
		removal := cmds[len(cmds)-1]
		for _, want := range []string{"systemctl disable --now -q privcloud-kube-router", "rm -f /etc/kubernetes/kube-router.conf /etc/systemd/system/privcloud-kube-router.service", "restore -w 10", "exit 1",
			"rules=$($save -t filter)", "(KUBE-ROUTER|KUBE-NWPLCY|KUBE-POD-FW)-", "grep -E '^(inet6:)?(KUBE-SRC|KUBE-DST)-'"} {
			if !strings.Contains(removal, want) {
				t.Errorf("%s: the firewall's removal lacks %q:\n%s", name, want, removal)
			}
		}
		if strings.Contains(removal, "KUBE|") {
			t.Errorf("%s: the removal would take kube-proxy's rules too:\n%s", name, removal)
		}
	}
	// a cluster that never ran it asks each node once, read-only, and installs nothing
	c2, hosts2, ex2, out2, _ := liveCluster(t)
	c2.Spec.Network.Policy = "none"
	if err := runPhases(t, Init(), c2, ex2, out2, "network-policy"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts2 {
		if _, _, ok := f.File("/etc/systemd/system/privcloud-kube-router.service"); ok || len(f.Commands()) != 1 || !strings.HasPrefix(f.Commands()[0], "test -e ") {
			t.Errorf("%s: policy none ran %q", name, f.Commands())
		}
	}
}

// A node's load balancer is started on systemd's socket, once: the socket unit starts before the service, and a
// converged run starts neither again. A balancer from a bundle built before it took its socket from systemd is
// refused before any unit is written, so the node keeps the balancer it runs.
func TestAPILoadBalancerSocketAndOlderBinaries(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "node/api-lb"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		if u, _, ok := f.File("/etc/systemd/system/privcloud-api-lb.socket"); !ok || !strings.Contains(string(u), "ListenStream=127.0.0.1:6444\n") {
			t.Errorf("%s: privcloud-api-lb.socket:\n%s", name, u)
		}
		if n := len(commandsLike(f, "set -e\nif ! false; then")); n != 1 {
			t.Errorf("%s: the socket was started %d times on a first run, want once: %q", name, n, f.Commands())
		}
	}
	w := hosts["worker1"]
	w.OnCommand("if ! test -x /usr/local/bin/privcloud-api-lb", ssh.Result{Stdout: []byte("no-socket\n")}, nil)
	before := len(w.Commands())
	w.SetFile("/etc/systemd/system/privcloud-api-lb.service", []byte("an older unit\n"), 0o600)
	err := runPhases(t, Init(), c, ex, out, "node/api-lb")
	if err == nil || !strings.Contains(err.Error(), "comes from a bundle built by an older privcloud") || !strings.Contains(err.Error(), "privcloud bundle build") {
		t.Errorf("an older balancer binary: %v", err)
	}
	if got, _, _ := w.File("/etc/systemd/system/privcloud-api-lb.service"); string(got) != "an older unit\n" {
		t.Errorf("the unit was rewritten for a balancer that cannot use it:\n%s", got)
	}
	if cmds := w.Commands()[before:]; len(cmds) != 1 {
		t.Errorf("after the refusal worker1 ran %q", cmds[1:])
	}
}

// TestMetricsEndpoint: with monitoring on, each host runs its metrics endpoint with the routes of its roles,
// on its own address; turned off, the endpoint is removed where it ran, and a host that never ran it is only
// looked at.
func TestMetricsEndpoint(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	c.Spec.Addons.Monitoring.Enabled = true
	if err := runPhases(t, Init(), c, ex, out, "certs", "metrics"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		f := hosts[h.Name]
		cfg, _, ok := f.File("/etc/kubernetes/metrics.yaml")
		unit, _, _ := f.File("/etc/systemd/system/privcloud-metrics.service")
		if !ok || !strings.Contains(string(cfg), "listen: "+h.InternalAddress+":10290\n") || !strings.Contains(string(cfg), "- system:privcloud:prometheus\n") ||
			!strings.Contains(string(unit), "DynamicUser=yes") {
			t.Errorf("%s: metrics.yaml:\n%s\nunit:\n%s", h.Name, cfg, unit)
		}
		if cp := h.HasRole(api.RoleControlPlane); cp != strings.Contains(string(cfg), "kube-scheduler: https://127.0.0.1:10259/metrics") ||
			!strings.Contains(string(cfg), "kube-proxy: http://127.0.0.1:10249/metrics") {
			t.Errorf("%s (control plane %v): routes:\n%s", h.Name, cp, cfg)
		}
	}
	c.Spec.Addons.Monitoring.Enabled = false
	hosts["cp1"].OnCommand("test -e '/etc/systemd/system/privcloud-metrics.service'", ssh.Result{Stdout: []byte("yes\n")}, nil)
	hosts["worker1"].OnCommand("test -e /etc/systemd/system/privcloud-metrics.service", ssh.Result{}, nil)
	before := len(hosts["worker1"].Commands())
	if err := runPhases(t, Init(), c, ex, out, "metrics"); err != nil {
		t.Fatal(err)
	}
	if n := len(commandsLike(hosts["cp1"], "systemctl disable --now -q privcloud-metrics")); n != 1 {
		t.Errorf("cp1: the endpoint was removed %d times, want once", n)
	}
	if cmds := hosts["worker1"].Commands()[before:]; len(cmds) != 1 {
		t.Errorf("worker1, which runs no endpoint, ran %q", cmds)
	}
	// the state directory forgot the endpoints' certificates: the next run asks nothing of any host
	before = len(hosts["cp1"].Commands())
	if err := runPhases(t, Init(), c, ex, out, "metrics"); err != nil {
		t.Fatal(err)
	}
	if cmds := hosts["cp1"].Commands()[before:]; len(cmds) != 0 {
		t.Errorf("monitoring off and forgotten, cp1 still ran %q", cmds)
	}
}
