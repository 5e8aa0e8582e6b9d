package phases

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// Reset returns hosts to their state before privcloud: nodes are drained, a control plane's services stop and its
// etcd member leaves the cluster, then services, files, CNI configuration, iptables rules and mounts go.
// --hosts limits it to some hosts; the others keep running and are only used to reach the API server and etcd.
func Reset() workflow.Workflow {
	return workflow.Workflow{Name: "reset", NoRecords: true, Phases: []workflow.Phase{
		{Name: "scope", Short: "Refuse a partial reset that would take every etcd member or control plane from hosts that stay", Required: true, Run: checkResetScope},
		connect(),
		{Name: "drain", Short: "Cordon and drain the nodes being reset, then delete their Node objects", Run: drainNodes},
		{Name: "api-lb", Short: "Take the control planes being reset out of the staying nodes' API load balancers", Run: leaveAPILoadBalancers},
		// the API server goes before its etcd member: one whose member has left hangs in its shutdown until
		// systemd's stop timeout
		{Name: "control-plane", Short: "Stop the control-plane services (API server, controller-manager, scheduler)", Roles: controlPlane,
			RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
				return stopUnits(ctx, r, t, controlPlaneUnits)
			}},
		// every host, whatever its role in cluster.yaml: a member is found in etcd's own list, so one whose
		// host lost the role there still leaves the quorum before its data is removed
		{Name: "etcd-member", Short: "Remove the host's etcd member from a running cluster", RunHost: removeEtcdMember},
		{Name: "services", Short: "Stop every container and privcloud's systemd units, and remove the units", RunHost: resetServices},
		{Name: "network", Short: "Remove CNI configuration, interfaces, pod routes and Kubernetes' iptables rules", RunHost: resetNetwork},
		{Name: "files", Short: "Unmount and remove privcloud's files, binaries and data directories", RunHost: resetFiles},
		{Name: "routes", Short: "Take the staying nodes' routes to the reset nodes' pods away", Run: refreshStayingRoutes},
	}}
}

// checkResetScope refuses 'reset --hosts' naming every etcd member, or every control plane, while other hosts
// stay: the cluster's state (or every API server) would be deleted under nodes that go on running, with
// nothing left to drain them into. A whole cluster goes with 'reset' alone.
func checkResetScope(_ context.Context, r *workflow.Run) error {
	if len(r.Scope) == 0 {
		return workflow.Skip("every host is reset")
	}
	var stay []string
	for _, h := range r.Cluster.Spec.Hosts {
		if !r.InScope(h.Name) {
			stay = append(stay, h.Name)
		}
	}
	if len(stay) == 0 {
		return nil
	}
	for _, role := range []api.Role{api.RoleEtcd, api.RoleControlPlane} {
		var all []string
		for _, h := range r.Cluster.Spec.HostsWithRole(role) {
			if !r.InScope(h.Name) {
				all = nil
				break
			}
			all = append(all, h.Name)
		}
		if len(all) > 0 {
			return fmt.Errorf("--hosts names every host with the %s role (%s) while %s stay: the cluster's state and API would be deleted under running nodes. Reset the whole cluster with 'privcloud reset' (no --hosts), or first join another %[1]s host to take over",
				role, strings.Join(all, ", "), strings.Join(stay, ", "))
		}
	}
	return nil
}

// refreshStayingRoutes rewrites the pod routes of the nodes that stay, from the nodes the cluster has now: the
// routes to the pods of the nodes just reset (their Node objects are gone) go.
func refreshStayingRoutes(ctx context.Context, r *workflow.Run) error {
	if len(r.Scope) == 0 {
		return workflow.Skip("every host is reset")
	}
	if staying(r, api.RoleControlPlane) == nil {
		return workflow.Skip("no control plane stays to list the nodes")
	}
	for _, t := range r.TargetsFor(nodes) {
		if r.InScope(t.Spec.Name) || t.Host == nil {
			continue
		}
		if err := configureNetwork(ctx, r, t); err != nil {
			return fmt.Errorf("%s: %w", t.Spec.Name, err)
		}
	}
	return nil
}

// staying is a connected control-plane host that is not being reset, through which the cluster is reached.
func staying(r *workflow.Run, role api.Role) *workflow.Target {
	for _, t := range r.TargetsFor([]api.Role{role}) {
		if !r.InScope(t.Spec.Name) && t.Host != nil {
			return t
		}
	}
	return nil
}

// drainNodes cordons each node being reset, evicts its pods (the eviction API honours PodDisruptionBudgets;
// DaemonSet and static pods stay, as kubectl drain leaves them) and deletes its Node object. When every
// control plane is being reset the cluster goes away as a whole and nothing is drained.
func drainNodes(ctx context.Context, r *workflow.Run) error {
	cp := staying(r, api.RoleControlPlane)
	if cp == nil {
		return workflow.Skip("every control-plane host is being reset: nothing to drain into")
	}
	var names []string
	for _, t := range r.TargetsFor(nodes) {
		if r.InScope(t.Spec.Name) {
			names = append(names, t.Spec.Name)
		}
	}
	var plans []string
	for _, n := range names {
		plans = append(plans, "cordon and drain node "+n+", then delete it")
	}
	if !r.Wet("", plans...) {
		return nil
	}
	c, err := apiVia(r, cp.Host)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, n := range names {
		if err := drainNode(ctx, r, c, n); err != nil {
			return fmt.Errorf("node %s: %w", n, err)
		}
	}
	return nil
}

func drainNode(ctx context.Context, r *workflow.Run, c *kube.Client, name string) error {
	if found, err := c.Cordon(ctx, name, "reset"); err != nil || !found {
		return err // not found: never joined, or already removed
	}
	if err := c.EvictPods(ctx, name, 2*time.Minute); err != nil {
		return err
	}
	if err := c.Kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	r.Changed("", "drained and deleted node "+name)
	return nil
}

// removeEtcdMember removes the host's member through a member that stays, so the cluster's quorum counts
// one member fewer before the host's etcd stops. Without a staying member the whole etcd cluster is reset.
func removeEtcdMember(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	other := staying(r, api.RoleEtcd)
	if other == nil {
		return workflow.Skip("every etcd member is being reset")
	}
	if !t.Spec.HasRole(api.RoleEtcd) {
		// a host cluster.yaml gives no etcd role is asked first whether it runs a member, so resetting a
		// worker does not depend on etcd
		member, err := hostHas(ctx, t.Host, fileTest("/etc/systemd/system/etcd.service"))
		if err != nil {
			return err
		}
		if !member {
			return workflow.Skip("no etcd member here")
		}
	}
	list, err := listMembers(ctx, other)
	if err != nil {
		return fmt.Errorf("etcd member list on %s: %w", other.Spec.Name, err)
	}
	m := list.find(t.Spec.Name, peerURL(t.Spec))
	if m == nil {
		return nil // not a member (any more)
	}
	id := strconv.FormatUint(m.ID, 16)
	if !r.Wet(other.Spec.Name, "etcdctl member remove "+id+" ("+t.Spec.Name+")") {
		return nil
	}
	if _, err := hostops.Etcdctl(ctx, other.Host, "member remove "+id); err != nil {
		return fmt.Errorf("etcd member remove %s on %s: %w", t.Spec.Name, other.Spec.Name, err)
	}
	r.Changed(t.Spec.Name, "removed etcd member "+id)
	return nil
}

// The systemd units privcloud installs, stopped in this order.
var (
	controlPlaneUnits = []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver"}
	privcloudUnits    = slices.Concat([]string{"kubelet", "kube-proxy", pki.KubeRouterUnit, pki.FlannelUnit, apiLBSocket, pki.APILoadBalancerUnit, pki.MetricsUnit}, controlPlaneUnits, []string{"etcd", "privcloud-pod-routes", "containerd"})
)

// resetServices stops the kubelet first (so nothing restarts pods), kills every container containerd runs,
// then stops and removes the units; containerd's shims survive containerd, so they are ended last.
func resetServices(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if err := stopUnits(ctx, r, t, privcloudUnits); err != nil {
		return err
	}
	var files []string
	for _, u := range privcloudUnits {
		if !strings.Contains(u, ".") {
			u += ".service"
		}
		files = append(files, "/etc/systemd/system/"+u)
	}
	script := `set -u
# the shims outlive containerd; -x matches the process name, not this script's own command line
pkill -KILL -x containerd-shim 2>/dev/null && echo "ended containerd shims"
n=0
for f in ` + strings.Join(files, " ") + ` /etc/systemd/system/containerd.service.d /etc/systemd/system/kubelet.service.d; do
  [ -e $f ] && rm -rf $f && n=$((n+1))
done
if [ $n -gt 0 ]; then systemctl daemon-reload; echo "removed $n unit files"; fi
true`
	return runScript(ctx, r, t, "remove privcloud's units", script)
}

// stopUnits stops and disables the units that are running or enabled, in order; before containerd stops,
// every container it runs is killed.
func stopUnits(ctx context.Context, r *workflow.Run, t *workflow.Target, units []string) error {
	script := `set -u
for u in ` + strings.Join(units, " ") + `; do
  if systemctl is-active -q $u 2>/dev/null || systemctl is-enabled -q $u 2>/dev/null; then
    if [ $u = containerd ] && [ -S /run/containerd/containerd.sock ] && command -v ctr >/dev/null; then
      for ns in $(ctr namespaces ls -q 2>/dev/null); do
        for task in $(ctr -n $ns tasks ls -q 2>/dev/null); do ctr -n $ns tasks kill -s SIGKILL $task >/dev/null 2>&1; done
      done
    fi
    systemctl disable --now $u >/dev/null 2>&1
    echo "stopped $u"
  fi
done
true`
	return runScript(ctx, r, t, "stop "+strings.Join(units, ", "), script)
}

// resetNetwork removes what the pod network and kube-proxy added: CNI configuration (Multus's too), the
// bridge, VXLAN and pod interfaces, every KUBE-*, CNI-*, FLANNEL-* and PRIVCLOUD-* iptables rule and chain, and the routes to other nodes'
// pods (the pod-routes unit's ExecStop flushed them in the services phase; a unit that failed to stop may not
// have).
func resetNetwork(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	script := `set -u
if [ -d /etc/cni/net.d ] && [ -n "$(ls -A /etc/cni/net.d 2>/dev/null)" ]; then rm -rf /etc/cni/net.d/*; echo "removed CNI configuration"; fi
[ -n "$(ip route show proto 201)" ] && ip route flush proto 201 && echo "removed routes to other nodes' pods"
for l in cni0 flannel.1 flannel-v6.1 kube-ipvs0; do ip link show $l >/dev/null 2>&1 && ip link delete $l && echo "deleted link $l"; done
` + removeChainsScript("", "(KUBE|CNI|FLANNEL|PRIVCLOUD)-", "Kubernetes and CNI rules", false) + `
# the NetworkPolicy firewall's sets, once no rule refers to them
` + destroyIPSetsScript("(KUBE|TMP)-", false) + `
true`
	return runScript(ctx, r, t, "remove the pod network's configuration, links, routes and rules", script)
}

// removeChainsScript removes, from the iptables tables of both IP families (only table, when not ""), every
// chain whose name starts with a match of the extended regular expression prefix, and each rule in or jumping
// to one: the tables are saved, filtered and restored, which is what kube-router's own cleanup does too. strict
// waits for the xtables lock and fails the script when a restore fails; otherwise a failure is passed over.
func removeChainsScript(table, prefix, what string, strict bool) string {
	tableArg, restoreArgs, onFail := "", "", ""
	if table != "" {
		tableArg = " -t " + table
	}
	if strict {
		restoreArgs, onFail = " -w 10", ` || { echo "$restore failed: `+what+` stay" >&2; exit 1; }`
	}
	pattern := "-j " + prefix + "|^:" + prefix + "|-A " + prefix
	return `for save in iptables-save ip6tables-save; do
  restore=${save%-save}-restore
  command -v $save >/dev/null || continue
  rules=$($save` + tableArg + `)
  if printf '%s\n' "$rules" | grep -qE -- '` + pattern + `'; then
    { printf '%s\n' "$rules" | grep -vE -- '` + pattern + `' | $restore` + restoreArgs + ` && echo "removed ` + what + ` ($save)"; }` + onFail + `
  fi
done`
}

// destroyIPSetsScript destroys the ipsets of both IP families whose names start with a match of prefix, once no
// rule refers to them. strict fails the script when one cannot be destroyed.
func destroyIPSetsScript(prefix string, strict bool) string {
	onFail := " 2>/dev/null"
	if strict {
		onFail = ` || { echo "ipset $s stays" >&2; exit 1; }`
	}
	return `if command -v ipset >/dev/null; then
  for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?` + prefix + `'); do ipset destroy "$s"` + onFail + ` && echo "destroyed ipset $s"; done
fi`
}

// resetFiles unmounts what pods and containers left mounted, then removes privcloud's files: configuration,
// PKI, data directories (etcd's included), the bundle's binaries and their links, and the hash records.
func resetFiles(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	dirs := []string{"/etc/kubernetes", "/var/lib/kubelet", "/var/lib/kube-proxy", "/var/log/kubernetes", r.Cluster.Spec.Etcd.DataDir, "/var/lib/containerd",
		"/run/containerd", "/etc/containerd", "/var/lib/cni", "/run/flannel", "/opt/cni/bin/multus", RemoteBinDir, "/var/lib/privcloud",
		"/etc/modules-load.d/privcloud.conf", "/etc/sysctl.d/99-privcloud.conf"}
	script := `set -u
mnts=$(awk '$2 ~ "^/(var/lib/kubelet|run/containerd|var/lib/containerd|run/netns)/" {print $2}' /proc/mounts | sort -r)
for m in $mnts; do umount -l "$m" 2>/dev/null && echo "unmounted $m"; done
for l in /usr/local/bin/* /opt/cni/bin/*; do
  case "$(readlink "$l" 2>/dev/null)" in ` + RemoteBinDir + `/*) rm -f "$l"; echo "removed link $l";; esac
done
for p in ` + ssh.ShellQuoteAll(dirs) + `; do
  # a last guard under validation: never a system folder, whatever reached this script
  case "$p" in /|/bin|/boot|/dev|/etc|/home|/lib|/lib64|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/*bin|/usr/lib|/var|/var/lib|/var/log) echo "refusing to remove system folder $p" >&2; exit 1;; esac
  if mountpoint -q "$p"; then
    # a mount point the host provides (a separate disk, say) stays; what privcloud put in it goes
    if [ -n "$(ls -A "$p")" ]; then find "$p" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && echo "emptied $p"; fi
  elif [ -e "$p" ]; then rm -rf "$p" && echo "removed $p"; fi
done
rmdir /opt/cni/bin /opt/cni /etc/cni/net.d /etc/cni 2>/dev/null
# the etcd user privcloud made (never one the host had before)
if [ "$(getent passwd etcd | cut -d: -f5)" = "etcd (privcloud)" ]; then userdel etcd && echo "removed user etcd"; fi
true`
	return runScript(ctx, r, t, "unmount and remove privcloud's files", script)
}
