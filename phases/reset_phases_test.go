package phases

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// The first line of each of reset's scripts, by the phase that runs it.
const (
	stopScript    = "set -u\nfor u in "
	unitsScript   = "set -u\n# the shims outlive containerd"
	networkScript = "set -u\nif [ -d /etc/cni/net.d ]"
	filesScript   = "set -u\nmnts="
)

// systemctlStub keeps units in $STATE: a file active.UNIT or enabled.UNIT says the unit is; disable --now
// takes both away.
func systemctlStub(t *testing.T) string {
	rm := realTool(t, "rm")
	return `case "$1" in
is-active) [ -e "$STATE/active.$3" ];;
is-enabled) [ -e "$STATE/enabled.$3" ];;
disable) ` + rm + ` -f "$STATE/active.$3" "$STATE/enabled.$3";;
*) exit 1;;
esac`
}

// A full reset of every host runs without an API server: nothing is drained into, no etcd member stays, and
// every host gets the services, network and files scripts; the control plane's services stop first.
func TestResetEveryHost(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	if err := runPhases(t, Reset(), c, ex, out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ phase, why string }{
		{"drain", "every control-plane host is being reset: nothing to drain into"},
		{"routes", "every host is reset"},
	} {
		if e := final(t, out, s.phase, ""); e.Status != report.Skipped || e.Message != s.why {
			t.Errorf("%s: %s %q, want skipped: %s", s.phase, e.Status, e.Message, s.why)
		}
	}
	if e := final(t, out, "etcd-member", "cp1"); e.Status != report.Skipped || e.Message != "every etcd member is being reset" {
		t.Errorf("etcd-member on cp1: %+v", e)
	}
	for name, h := range hosts {
		var order []string
		for _, cmd := range h.Commands() {
			for _, s := range []string{stopScript, unitsScript, networkScript, filesScript} {
				if strings.HasPrefix(cmd, s) {
					order = append(order, strings.Fields(strings.TrimPrefix(cmd, "set -u\n"))[0]+"…")
				}
			}
		}
		want := []string{"for…", "#…", "if…", "mnts=$(awk…"}
		if name == "cp1" {
			want = append([]string{"for…"}, want...) // the control-plane phase: API server before etcd leaves
		}
		if !slices.Equal(order, want) {
			t.Errorf("%s ran %q, want %q", name, order, want)
		}
	}
	stops := commandsLike(hosts["cp1"], stopScript)
	if !strings.Contains(stops[0], "for u in kube-scheduler kube-controller-manager kube-apiserver; do") {
		t.Errorf("the control-plane phase stops:\n%s", stops[0])
	}
	if got := commandsLike(hosts["worker1"], stopScript); len(got) != 1 {
		t.Errorf("a worker ran %d stop scripts: the control-plane phase is for control planes only", len(got))
	}
}

// The services phase stops privcloud's units in order (the kubelet first, so nothing restarts pods;
// containerd last, its containers killed first) and only those running or enabled: run on the stubbed host a
// second time, it stops nothing and reports no change.
func TestResetServicesStopsWhatRunsOnce(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	state := t.TempDir()
	for _, u := range []string{"active.kubelet", "active.containerd", "active.etcd", "enabled.kube-proxy"} {
		os.WriteFile(filepath.Join(state, u), nil, 0o644)
	}
	stubs := map[string]string{"systemctl": systemctlStub(t), "ctr": "true"}
	cp := hosts["cp1"]
	cp.OnCommandFunc(stopScript, func(cmd string) (ssh.Result, error) {
		return ssh.Result{Stdout: []byte(runStubbed(t, state, cmd, stubs))}, nil
	})
	cp.OnCommand(unitsScript, ssh.Result{Stdout: []byte("ended containerd shims\nremoved 4 unit files\n")}, nil)
	// two more members stay, so resetting cp1 alone is allowed
	for i, name := range []string{"cp2", "cp3"} {
		addr := fmt.Sprintf("192.168.10.%d", 12+i)
		c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: name, Address: addr, InternalAddress: addr, Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}})
		hosts[name] = sshtest.NewFake(name)
	}
	ex.Hosts = []string{"cp1"}
	if err := runPhases(t, Reset(), c, ex, out, "services"); err != nil {
		t.Fatal(err)
	}
	want := []string{"services cp1 stopped kubelet", "services cp1 stopped kube-proxy", "services cp1 stopped etcd",
		"services cp1 stopped containerd", "services cp1 ended containerd shims", "services cp1 removed 4 unit files"}
	if got := changes(t, out); !slices.Equal(got, want) {
		t.Errorf("changes:\n%q\nwant\n%q", got, want)
	}
	if e := final(t, out, "services", "cp1"); e.Status != report.Changed {
		t.Errorf("services on cp1: %s", e.Status)
	}
	var disabled []string
	for _, call := range calls(state) {
		if u, ok := strings.CutPrefix(call, "systemctl disable --now "); ok {
			disabled = append(disabled, u)
		}
	}
	if !slices.Equal(disabled, []string{"kubelet", "kube-proxy", "etcd", "containerd"}) {
		t.Errorf("disabled %q: the kubelet first, containerd last, nothing that was not running or enabled", disabled)
	}
	for _, w := range []string{"worker1", "worker2"} {
		if len(hosts[w].Commands()) != 0 {
			t.Errorf("%s is outside --hosts but ran %q", w, hosts[w].Commands())
		}
	}

	script := commandsLike(cp, stopScript)[0]
	if !strings.Contains(script, "for u in kubelet kube-proxy privcloud-kube-router privcloud-flannel privcloud-api-lb.socket privcloud-api-lb privcloud-metrics kube-scheduler kube-controller-manager kube-apiserver etcd privcloud-pod-routes containerd; do") {
		t.Errorf("stop order:\n%s", script)
	}
	// containers die before containerd stops: the kill loop comes before the disable of the same unit
	if kill, disable := strings.Index(script, "tasks kill -s SIGKILL"), strings.Index(script, "systemctl disable --now"); kill < 0 || kill > disable {
		t.Errorf("containers are not killed before containerd stops:\n%s", script)
	}
	units := commandsLike(cp, unitsScript)[0]
	for _, u := range privcloudUnits {
		if !strings.Contains(u, ".") {
			u += ".service"
		}
		if !strings.Contains(units, "/etc/systemd/system/"+u+" ") {
			t.Errorf("unit %s is not removed:\n%s", u, units)
		}
	}
	for _, s := range []string{"/etc/systemd/system/containerd.service.d", "/etc/systemd/system/kubelet.service.d",
		"[ -e $f ] && rm -rf $f", "if [ $n -gt 0 ]; then systemctl daemon-reload", "pkill -KILL -x containerd-shim"} {
		if !strings.Contains(units, s) {
			t.Errorf("the units script lacks %q:\n%s", s, units)
		}
	}

	// nothing runs any more, and the host says it removed nothing
	cp.OnCommand(unitsScript, ssh.Result{}, nil)
	os.Remove(filepath.Join(state, "calls"))
	if err := runPhases(t, Reset(), c, ex, out, "services"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 || summary(t, out).Changed != 0 {
		t.Errorf("a second reset changed %q", got)
	}
	if e := final(t, out, "services", "cp1"); e.Status != report.OK {
		t.Errorf("second run: services on cp1 %s, want ok", e.Status)
	}
	for _, call := range calls(state) {
		if strings.HasPrefix(call, "systemctl disable") {
			t.Errorf("the second run stopped a unit again: %s", call)
		}
	}
}

// The network phase removes every KUBE-*, CNI-* and FLANNEL-* rule and chain and keeps the host's own rules,
// the bridge, flannel's VXLAN link and the pod routes; the second run finds nothing left and changes nothing.
func TestResetNetworkKeepsTheHostsOwnRules(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	state := t.TempDir()
	cat, grep := realTool(t, "cat"), realTool(t, "grep")
	own := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 10.0.0.0/8 -m comment --comment "KUBE API from the bastion" -j ACCEPT
COMMIT`
	kube := `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:CNI-FORWARD - [0:0]
:FLANNEL-FWD - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 10.0.0.0/8 -m comment --comment "KUBE API from the bastion" -j ACCEPT
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -j CNI-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A CNI-FORWARD -d 10.244.1.0/24 -j ACCEPT
-A FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT
COMMIT`
	os.WriteFile(filepath.Join(state, "iptables"), []byte(kube+"\n"), 0o644)
	os.WriteFile(filepath.Join(state, "ip6tables"), []byte("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"), 0o644)
	os.WriteFile(filepath.Join(state, "routes"), []byte("10.244.2.0/24 via 192.168.10.22 proto 201\n"), 0o644)
	os.WriteFile(filepath.Join(state, "link.cni0"), nil, 0o644)
	os.WriteFile(filepath.Join(state, "link.flannel.1"), nil, 0o644)
	rm := realTool(t, "rm")
	stubs := map[string]string{
		"ls":                "true", // /etc/cni/net.d, if this machine has one, looks empty
		"rm":                "exit 1",
		"grep":              `exec ` + grep + ` "$@"`,
		"iptables-save":     cat + ` "$STATE/iptables"`,
		"iptables-restore":  cat + ` >"$STATE/iptables"`,
		"ip6tables-save":    cat + ` "$STATE/ip6tables"`,
		"ip6tables-restore": cat + ` >"$STATE/ip6tables"`,
		"ip": `case "$1 $2" in
"route show") ` + cat + ` "$STATE/routes";;
"route flush") : >"$STATE/routes";;
"link show") [ -e "$STATE/link.$3" ];;
"link delete") ` + rm + ` "$STATE/link.$3";;
*) exit 1;;
esac`,
	}
	w := hosts["worker1"]
	w.OnCommandFunc(networkScript, func(cmd string) (ssh.Result, error) {
		return ssh.Result{Stdout: []byte(runStubbed(t, state, cmd, stubs))}, nil
	})
	ex.Hosts = []string{"worker1"}
	if err := runPhases(t, Reset(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	want := []string{"network worker1 removed routes to other nodes' pods", "network worker1 deleted link cni0",
		"network worker1 deleted link flannel.1", "network worker1 removed Kubernetes and CNI rules (iptables-save)"}
	if got := changes(t, out); !slices.Equal(got, want) {
		t.Errorf("changes:\n%q\nwant\n%q", got, want)
	}
	if got, _ := os.ReadFile(filepath.Join(state, "iptables")); strings.TrimSpace(string(got)) != own {
		t.Errorf("rules after reset:\n%s\nwant the host's own:\n%s", got, own)
	}
	for _, call := range calls(state) {
		if strings.HasPrefix(call, "ip6tables-restore") {
			t.Error("ip6tables was restored though it held no Kubernetes rule")
		}
	}

	os.Remove(filepath.Join(state, "calls"))
	if err := runPhases(t, Reset(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 {
		t.Errorf("a second reset changed %q", got)
	}
	for _, call := range calls(state) {
		if strings.Contains(call, "restore") || strings.Contains(call, "delete") || strings.Contains(call, "flush") {
			t.Errorf("the second run changed the host: %s", call)
		}
	}
}

// The files phase gets every data directory as one quoted word, guards system folders, keeps mount points
// the host provides and removes only links into privcloud's binaries.
func TestResetFilesScript(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Etcd.DataDir = "/srv/etcd data"
	if err := runPhases(t, Reset(), c, ex, out, "files"); err != nil {
		t.Fatal(err)
	}
	script := commandsLike(hosts["worker2"], filesScript)[0]
	list := regexp.MustCompile(`(?m)^for p in (.*); do$`).FindStringSubmatch(script)
	if list == nil {
		t.Fatalf("no removal loop:\n%s", script)
	}
	for _, p := range []string{"'/etc/kubernetes'", "'/var/lib/kubelet'", "'/srv/etcd data'", "'/var/lib/containerd'", "'/etc/containerd'",
		"'/opt/privcloud'", "'/var/lib/privcloud'", "'/etc/sysctl.d/99-privcloud.conf'", "'/etc/modules-load.d/privcloud.conf'"} {
		if !strings.Contains(list[1], p) {
			t.Errorf("%s is not removed, or not quoted: %s", p, list[1])
		}
	}
	for _, s := range []string{
		`case "$(readlink "$l" 2>/dev/null)" in /opt/privcloud/*) rm -f "$l"`, // links elsewhere stay
		`if mountpoint -q "$p"; then`, `find "$p" -mindepth 1 -maxdepth 1 -exec rm -rf {} +`,
		`elif [ -e "$p" ]; then rm -rf "$p" && echo "removed $p"; fi`,
		`umount -l "$m" 2>/dev/null && echo "unmounted $m"`} {
		if !strings.Contains(script, s) {
			t.Errorf("the files script lacks %q:\n%s", s, script)
		}
	}
	if e := final(t, out, "files", "worker2"); e.Status != report.OK {
		t.Errorf("a host with nothing to remove: files %s, want ok", e.Status)
	}
}

// reset --hosts of one etcd member removes it through a member that stays, by the ID etcd reports, before
// its etcd stops; a host that is no member (any more) is left alone.
func TestResetRemovesTheEtcdMemberThroughAStayingOne(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "cp2", Address: "192.168.10.12", InternalAddress: "192.168.10.12",
		Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}})
	hosts["cp2"] = sshtest.NewFake("cp2")
	list := `{"members":[{"ID":10276657743932975437,"name":"cp1","peerURLs":["https://192.168.10.11:2380"]},` +
		`{"ID":9372538179322589801,"name":"cp2","peerURLs":["https://192.168.10.12:2380"]}]}`
	hosts["cp1"].OnCommand(hostops.EtcdctlBase+" --command-timeout=10s member list", ssh.Result{Stdout: []byte(list)}, nil)
	ex.Hosts = []string{"cp2"}
	if err := runPhases(t, Reset(), c, ex, out, "etcd-member"); err != nil {
		t.Fatal(err)
	}
	removes := commandsLike(hosts["cp1"], hostops.EtcdctlBase+" --command-timeout=10s member remove")
	if len(removes) != 1 || !strings.HasSuffix(removes[0], " member remove 8211f1d0f64f3269") {
		t.Errorf("member removals on cp1: %q, want cp2's ID in hex", removes)
	}
	if len(hosts["cp2"].Commands()) != 0 {
		t.Errorf("the leaving member was asked: %q", hosts["cp2"].Commands())
	}
	if got := changes(t, out); !slices.Equal(got, []string{"etcd-member cp2 removed etcd member 8211f1d0f64f3269"}) {
		t.Errorf("changes %q", got)
	}

	// the member is gone: a re-run finds nothing to remove
	hosts["cp1"].OnCommand(hostops.EtcdctlBase+" --command-timeout=10s member list", ssh.Result{Stdout: []byte(
		`{"members":[{"ID":10276657743932975437,"name":"cp1","peerURLs":["https://192.168.10.11:2380"]}]}`)}, nil)
	if err := runPhases(t, Reset(), c, ex, out, "etcd-member"); err != nil {
		t.Fatal(err)
	}
	if n := len(commandsLike(hosts["cp1"], hostops.EtcdctlBase+" --command-timeout=10s member remove")); n != 1 || len(changes(t, out)) != 0 {
		t.Errorf("a re-run removed again (%d removals) or reported %q", n, changes(t, out))
	}
}

// A host whose etcd role cluster.yaml dropped while its member runs still leaves etcd before its data goes:
// the member is found in etcd's own list, not by the role, or the quorum would keep counting a dead member.
func TestResetRemovesTheMemberOfAHostThatLostTheRole(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "cp2", Address: "192.168.10.12", InternalAddress: "192.168.10.12", Roles: []api.Role{api.RoleWorker}})
	hosts["cp2"] = sshtest.NewFake("cp2")
	hosts["cp2"].OnCommand("test -e '/etc/systemd/system/etcd.service'", ssh.Result{Stdout: []byte("yes\n")}, nil)
	hosts["cp1"].OnCommand(hostops.EtcdctlBase+" --command-timeout=10s member list", ssh.Result{Stdout: []byte(
		`{"members":[{"ID":10276657743932975437,"name":"cp1","peerURLs":["https://192.168.10.11:2380"]},` +
			`{"ID":9372538179322589801,"name":"cp2","peerURLs":["https://192.168.10.12:2380"]}]}`)}, nil)
	ex.Hosts = []string{"cp2"}
	if err := runPhases(t, Reset(), c, ex, out, "etcd-member"); err != nil {
		t.Fatal(err)
	}
	if removes := commandsLike(hosts["cp1"], hostops.EtcdctlBase+" --command-timeout=10s member remove"); len(removes) != 1 || !strings.HasSuffix(removes[0], " 8211f1d0f64f3269") {
		t.Errorf("member removals on cp1: %q, want cp2's", removes)
	}
	// a worker that runs no member is reset without asking etcd
	ex.Hosts = []string{"worker1"}
	if err := runPhases(t, Reset(), c, ex, out, "etcd-member"); err != nil {
		t.Fatal(err)
	}
	if lists := commandsLike(hosts["cp1"], hostops.EtcdctlBase+" --command-timeout=10s member list"); len(lists) != 1 {
		t.Errorf("resetting a worker asked etcd: %d member lists", len(lists))
	}
	if e := final(t, out, "etcd-member", "worker1"); e.Status != report.Skipped {
		t.Errorf("worker1: %+v", e)
	}
}

// reset --hosts naming every etcd member, or every control plane, while other hosts stay is refused before
// anything is touched; the whole cluster, or one member of three, is reset.
func TestResetRefusesTakingEveryMemberFromStayingHosts(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t) // cp1 (control plane, etcd), worker1, worker2
	ex.Hosts = []string{"cp1"}
	err := runPhases(t, Reset(), c, ex, out)
	if err == nil || !strings.Contains(err.Error(), "--hosts names every host with the etcd role (cp1) while worker1, worker2 stay") {
		t.Fatalf("got %v", err)
	}
	for name, f := range hosts {
		if len(f.Commands()) != 0 {
			t.Errorf("%s ran %q before the refusal", name, f.Commands())
		}
	}
	ex.Hosts = nil
	out.Reset()
	if err := runPhases(t, Reset(), c, ex, out, "scope"); err != nil {
		t.Errorf("the whole cluster: %v", err)
	}
}

// A script that fails names what it was doing and carries the host's stderr.
func TestResetScriptFailureSaysWhat(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	hosts["worker1"].OnCommand(filesScript, ssh.Result{ExitCode: 1, Stderr: []byte("refusing to remove system folder /var/lib\n")}, nil)
	ex.Hosts = []string{"worker1"}
	err := runPhases(t, Reset(), c, ex, out, "files")
	if err == nil || !strings.Contains(err.Error(), "unmount and remove privcloud's files") || !strings.Contains(err.Error(), "refusing to remove system folder /var/lib") {
		t.Errorf("error: %v", err)
	}
	if e := final(t, out, "files", "worker1"); e.Status != report.Failed {
		t.Errorf("files on worker1: %s, want failed", e.Status)
	}
}
