// Package preflight finds out what each host is (OS, kernel, resources, cgroups, clock) and checks that the
// cluster described in cluster.yaml can run there. Gathering is one read-only command per host; checking is
// a pure function of the configuration and the facts, so it is tested without hosts.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/ssh"
)

// Facts is what one host reported.
type Facts struct {
	Host          string `json:"host"`
	OS            string `json:"os"`
	Kernel        string `json:"kernel"`
	Arch          string `json:"arch"`
	Hostname      string `json:"hostname"`
	MachineID     string `json:"machineID"`
	CPUs          int    `json:"cpus"`
	MemoryBytes   uint64 `json:"memoryBytes"`
	SwapBytes     uint64 `json:"swapBytes"`
	DiskFreeBytes uint64 `json:"diskFreeBytes"`
	CgroupVersion int    `json:"cgroupVersion"`
	Systemd       bool   `json:"systemd"`
	KVM           bool   `json:"kvm"`
	// KataShim is whether containerd finds Kata's shim (containerd-shim-kata-v2) in its PATH.
	KataShim bool `json:"kataShim"`
	IPSet    bool `json:"ipset"`
	// VXLAN is whether the kernel can make VXLAN links: "yes", "no", or "unknown" when the host shows neither
	// its modules nor its kernel configuration.
	VXLAN string `json:"vxlan"`
	// PodNetwork is the pod network privcloud installed on the host ("flannel", "bridge"), or "".
	PodNetwork string `json:"podNetwork,omitempty"`
	// Running is what the cluster privcloud installed on the host was set up with, read from its services'
	// files (empty values where the host runs no such service).
	Running RunningSettings `json:"running,omitempty"`
	// Subnets are the host's global IPv4 addresses with their prefixes: the segments it reaches directly.
	Subnets   []string      `json:"subnets,omitempty"`
	ClockSkew time.Duration `json:"clockSkewNs"`
	// Etcd is the state of the etcd member privcloud installed ("" when there is none): "healthy", or why not.
	Etcd string `json:"etcd,omitempty"`
	// APIServer is the state of the API server privcloud installed ("" when there is none): "ready", or why not.
	APIServer string `json:"apiServer,omitempty"`
}

// RunningSettings are the settings of cluster.yaml a running cluster cannot change: Services, nodes and pods
// hold the addresses, and etcd holds Secrets under the encryption key.
type RunningSettings struct {
	PodCIDR          string `json:"podCIDR,omitempty"`
	NodeCIDRMaskSize string `json:"nodeCIDRMaskSize,omitempty"`
	ServiceCIDR      string `json:"serviceCIDR,omitempty"`
	ClusterDNS       string `json:"clusterDNS,omitempty"`
	DNSDomain        string `json:"dnsDomain,omitempty"`
	// EncryptsSecrets: the host's API server is configured to encrypt Secrets in etcd.
	EncryptsSecrets bool `json:"encryptsSecrets,omitempty"`
}

// runningScript prints, as running.KEY=VALUE lines, what a running cluster was set up with, from the files
// privcloud wrote (the services' flags, the kubelet's configuration).
const runningScript = `cm=/etc/systemd/system/kube-controller-manager.service
[ -f $cm ] && sed -n 's/^ *--\(cluster-cidr\|node-cidr-mask-size\|service-cluster-ip-range\)=\([^ ]*\).*/running.\1=\2/p' $cm
kc=/var/lib/kubelet/config.yaml
[ -f $kc ] && awk '/^clusterDNS:/ {getline; sub(/^- */, ""); print "running.cluster-dns=" $0} /^clusterDomain:/ {print "running.cluster-domain=" $2}' $kc
api=/etc/systemd/system/kube-apiserver.service
[ -f $api ] && grep -q -- '--encryption-provider-config=' $api && echo running.encryption=yes
true`

// gatherScript prints key=value lines; it only reads.
const gatherScript = `os=unknown; [ -r /etc/os-release ] && os=$(. /etc/os-release; echo "$ID $VERSION_ID")
echo "os=$os"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
echo "machineid=$(cat /etc/machine-id 2>/dev/null)"
echo "cpus=$(getconf _NPROCESSORS_ONLN)"
awk '/^MemTotal:/{print "memkb=" $2} /^SwapTotal:/{print "swapkb=" $2}' /proc/meminfo
echo "swaps=$(awk 'NR>1' /proc/swaps | wc -l)"
echo "diskkb=$(df -Pk /var 2>/dev/null | awk 'NR==2{print $4}')"
echo "cgroupfs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
[ -d /run/systemd/system ] && echo systemd=yes
[ -c /dev/kvm ] && echo kvm=yes
# containerd looks for a runtime's shim in its PATH: systemd's default for services
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do [ -x $d/containerd-shim-kata-v2 ] && echo katashim=yes && break; done
command -v ipset >/dev/null && echo ipset=yes
kconfig=/boot/config-$(uname -r); [ -r /proc/config.gz ] && kconfig=/proc/config.gz
if [ -d /sys/module/vxlan ] || modprobe -nq vxlan 2>/dev/null; then echo vxlan=yes
elif [ -r "$kconfig" ]; then zcat -f "$kconfig" 2>/dev/null | grep -qE '^CONFIG_VXLAN=(y|m)' && echo vxlan=yes || echo vxlan=no
elif [ -d /sys/module ]; then echo vxlan=no
else echo vxlan=unknown; fi
if [ -f /etc/systemd/system/privcloud-flannel.service ]; then echo podnetwork=flannel
elif [ -f /etc/systemd/system/privcloud-pod-routes.service ]; then echo podnetwork=bridge; fi
` + runningScript + `
echo "subnets=$(ip -o -4 addr show scope global 2>/dev/null | awk '{print $4}' | tr '\n' ' ')"
echo "time=$(date +%s%N)"`

// servicesScript prints the state of the services of a running cluster, only where privcloud installed them,
// each asked about briefly, both at once (each line is written whole). It runs apart from gatherScript, whose
// clock reading must not wait for it.
const servicesScript = `last() { printf '%s' "$1" | tail -n 1 | cut -c1-300; }
if [ -f /etc/systemd/system/etcd.service ]; then (
  st=$(systemctl is-active etcd 2>/dev/null)
  if [ "$st" != active ]; then echo "etcd=not running ($st)"
  elif out=$(` + hostops.EtcdctlBase + ` --dial-timeout=2s --command-timeout=3s endpoint health 2>&1); then echo etcd=healthy
  else echo "etcd=unhealthy: $(last "$out")"; fi
) & fi
if [ -f /etc/systemd/system/kube-apiserver.service ]; then (
  st=$(systemctl is-active kube-apiserver 2>/dev/null)
  if [ "$st" != active ]; then echo "apiserver=not running ($st)"
  elif ! command -v kubectl >/dev/null; then echo apiserver=ready
  elif out=$(kubectl --kubeconfig=/etc/kubernetes/admin.conf --server=https://127.0.0.1:6443 --request-timeout=5s get --raw=/readyz 2>&1); then echo apiserver=ready
  else
    # /readyz names the checks that failed ("[-]etcd failed"); anything else, its last line
    why=$(printf '%s' "$out" | grep -o '\[-\][^ ]* failed' | tr '\n' ' ' | sed 's/ *$//')
    echo "apiserver=not ready: ${why:-$(last "$out")}"
  fi
) & fi
wait`

// Gather runs the fact script on h. The clock skew is the host's time against the midpoint of the round trip.
func Gather(ctx context.Context, h ssh.Host) (Facts, error) {
	before := time.Now()
	res, err := h.Run(ctx, gatherScript, ssh.ReadOnly())
	after := time.Now()
	if err != nil {
		return Facts{}, err
	}
	f := Facts{Host: h.Name()}
	kv := map[string]string{}
	addKeyValues(kv, res.Stdout)
	f.OS, f.Kernel, f.Arch, f.Hostname, f.MachineID = kv["os"], kv["kernel"], kv["arch"], kv["hostname"], kv["machineid"]
	f.CPUs, _ = strconv.Atoi(kv["cpus"])
	f.MemoryBytes = kib(kv["memkb"])
	if n, _ := strconv.Atoi(kv["swaps"]); n > 0 {
		f.SwapBytes = kib(kv["swapkb"])
	}
	f.DiskFreeBytes = kib(kv["diskkb"])
	f.CgroupVersion = 1
	if kv["cgroupfs"] == "cgroup2fs" {
		f.CgroupVersion = 2
	}
	f.Systemd, f.KVM, f.IPSet, f.VXLAN = kv["systemd"] == "yes", kv["kvm"] == "yes", kv["ipset"] == "yes", kv["vxlan"]
	f.KataShim = kv["katashim"] == "yes"
	f.Subnets, f.PodNetwork = strings.Fields(kv["subnets"]), kv["podnetwork"]
	f.Running = RunningSettings{PodCIDR: kv["running.cluster-cidr"], NodeCIDRMaskSize: kv["running.node-cidr-mask-size"],
		ServiceCIDR: kv["running.service-cluster-ip-range"], ClusterDNS: kv["running.cluster-dns"], DNSDomain: kv["running.cluster-domain"],
		EncryptsSecrets: kv["running.encryption"] == "yes"}
	svc, err := h.Run(ctx, servicesScript, ssh.ReadOnly())
	if err != nil {
		return Facts{}, err
	}
	addKeyValues(kv, svc.Stdout)
	f.Etcd, f.APIServer = kv["etcd"], kv["apiserver"]
	if ns, err := strconv.ParseInt(kv["time"], 10, 64); err == nil {
		mid := before.Add(after.Sub(before) / 2)
		f.ClockSkew = time.Unix(0, ns).Sub(mid)
	}
	return f, nil
}

// addKeyValues adds the key=value lines of out to kv.
func addKeyValues(kv map[string]string, out []byte) {
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
}

func kib(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n * 1024
}

// Severity grades a finding.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem on one host (or "" for the cluster).
type Finding struct {
	Host     string   `json:"host,omitempty"`
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// Limits a host is checked against.
const (
	MaxClockSkewWarning = 2 * time.Second
	MaxClockSkew        = 30 * time.Second
	MinControlPlaneMem  = 1536 << 20
	MinDiskFree         = 2 << 30
)

// Check judges the facts of every host against the cluster: errors stop an install, warnings name a
// consequence the operator should know about.
func Check(c *api.Cluster, facts []Facts) []Finding {
	var out []Finding
	add := func(host, check string, sev Severity, format string, args ...any) {
		out = append(out, Finding{Host: host, Check: check, Severity: sev, Message: fmt.Sprintf(format, args...)})
	}
	spec := map[string]api.Host{}
	for _, h := range c.Spec.Hosts {
		spec[h.Name] = h
	}
	machineIDs := map[string][]string{}
	hostnames := map[string][]string{}
	for _, f := range facts {
		h := spec[f.Host]
		if !f.Systemd {
			add(f.Host, "systemd", Error, "systemd is not running: privcloud runs every service as a systemd unit")
		}
		if f.Arch != "x86_64" && f.Arch != "aarch64" {
			add(f.Host, "arch", Error, "architecture %q is not supported (x86_64, aarch64)", f.Arch)
		}
		if f.SwapBytes > 0 {
			add(f.Host, "swap", Error, "swap is on (%s): the kubelet refuses to start; turn it off (swapoff -a and /etc/fstab)", size(f.SwapBytes))
		}
		if f.CgroupVersion == 1 && c.Spec.Kubelet.FailCgroupV1 != nil && *c.Spec.Kubelet.FailCgroupV1 {
			add(f.Host, "cgroups", Error, "the host uses cgroup v1, which the kubelet refuses by default: boot with cgroup v2, or set spec.kubelet.failCgroupV1: false")
		}
		switch skew := abs(f.ClockSkew); {
		case skew > MaxClockSkew:
			add(f.Host, "clock", Error, "clock is %s off: certificates and etcd leases break; run NTP (chrony, systemd-timesyncd)", f.ClockSkew.Round(time.Millisecond))
		case skew > MaxClockSkewWarning:
			add(f.Host, "clock", Warning, "clock is %s off: run NTP", f.ClockSkew.Round(time.Millisecond))
		}
		if c.Spec.Containerd.Kata.Enabled && !f.KVM {
			add(f.Host, "kvm", Warning, "no /dev/kvm: Kata Containers pods (RuntimeClass %s) cannot run on this host; runc pods can", c.Spec.Containerd.Kata.RuntimeClassName)
		}
		if c.Spec.Containerd.Kata.Enabled && h.IsNode() && !f.KataShim {
			add(f.Host, "kata", Warning, "no containerd-shim-kata-v2 where containerd looks (/usr/local/bin, /usr/bin, ...): Kata Containers pods (RuntimeClass %s) cannot start on this host. privcloud registers the runtime; Kata itself (its shim, guest kernel and image, a hypervisor) comes from the host's packages or Kata's static release; or set spec.containerd.kata.enabled: false",
				c.Spec.Containerd.Kata.RuntimeClassName)
		}
		if c.Spec.Network.PolicyEnforced() && h.IsNode() && !f.IPSet {
			add(f.Host, "ipset", Error, "ipset is not installed, and the NetworkPolicy firewall (spec.network.policy: kube-router) needs it: install it (Debian and Ubuntu: apt-get install ipset), or set spec.network.policy: none")
		}
		if f.PodNetwork != "" && f.PodNetwork != c.Spec.Network.Plugin {
			add(f.Host, "pod-network", Error, "the host runs the %s pod network, but spec.network.plugin is %s (flannel is the default): a running cluster keeps its pod network; set spec.network.plugin: %s",
				f.PodNetwork, c.Spec.Network.Plugin, f.PodNetwork)
		}
		out = append(out, checkRunning(c, f)...)
		out = append(out, checkRolesKept(f, h)...)
		if c.Spec.Network.Flannel() && h.IsNode() {
			switch f.VXLAN {
			case "no":
				add(f.Host, "vxlan", Error, "the kernel has no VXLAN support, which the flannel pod network needs: use a kernel with CONFIG_VXLAN, or set spec.network.plugin: bridge if every node sits on one layer-2 segment")
			case "unknown":
				add(f.Host, "vxlan", Warning, "cannot tell whether the kernel supports VXLAN (no /sys/module, no kernel configuration), which the flannel pod network needs")
			}
		}
		if h.HasRole(api.RoleControlPlane) && f.MemoryBytes < MinControlPlaneMem {
			add(f.Host, "memory", Warning, "%s of memory: a control plane wants at least %s", size(f.MemoryBytes), size(MinControlPlaneMem))
		}
		if f.DiskFreeBytes < MinDiskFree {
			add(f.Host, "disk", Warning, "%s free under /var: images and etcd want at least %s", size(f.DiskFreeBytes), size(MinDiskFree))
		}
		if f.MachineID != "" {
			machineIDs[f.MachineID] = append(machineIDs[f.MachineID], f.Host)
		}
		hostnames[f.Hostname] = append(hostnames[f.Hostname], f.Host)
	}
	out = append(out, checkServices(c, facts)...)
	out = append(out, checkOneSegment(c, facts)...)
	for _, id := range sortedKeys(machineIDs) {
		if hosts := machineIDs[id]; len(hosts) > 1 {
			add("", "machine-id", Error, "hosts %s share /etc/machine-id %s (cloned images?): regenerate it (systemd-machine-id-setup)", strings.Join(hosts, ", "), id)
		}
	}
	for _, name := range sortedKeys(hostnames) {
		if hosts := hostnames[name]; len(hosts) > 1 {
			add("", "hostname", Warning, "hosts %s share the hostname %q: node names come from cluster.yaml, but logs and tools will confuse them", strings.Join(hosts, ", "), name)
		}
	}
	return out
}

// checkRunning refuses cluster.yaml settings that differ from what the host's running cluster was set up
// with, where no rollout could change them: the networks (a kubelet rolled to a new clusterDNS before CoreDNS's
// Service, whose address cannot change, would leave every new pod without DNS), and switching Secrets'
// encryption off (the API servers could no longer read them).
func checkRunning(c *api.Cluster, f Facts) []Finding {
	var out []Finding
	n := c.Spec.Network
	for _, s := range []struct{ field, running, want, from string }{
		{"spec.network.podCIDR", f.Running.PodCIDR, n.PodCIDR, "kube-controller-manager"},
		{"spec.network.nodeCIDRMaskSize", f.Running.NodeCIDRMaskSize, strconv.Itoa(n.NodeCIDRMaskSize), "kube-controller-manager"},
		{"spec.network.serviceCIDR", f.Running.ServiceCIDR, n.ServiceCIDR, "kube-controller-manager"},
		{"spec.network.clusterDNS", f.Running.ClusterDNS, n.ClusterDNS, "the kubelet"},
		{"spec.network.dnsDomain", f.Running.DNSDomain, n.DNSDomain, "the kubelet"},
	} {
		if s.running != "" && !sameSetting(s.running, s.want) {
			out = append(out, Finding{Host: f.Host, Check: "running-cluster", Severity: Error,
				Message: fmt.Sprintf("the cluster here runs with %s %s (%s), but cluster.yaml says %s: a running cluster keeps its networks, which Services, nodes and pods hold; set %[1]s: %[2]s",
					s.field, s.running, s.from, s.want)})
		}
	}
	switch {
	case f.Running.EncryptsSecrets && !c.Spec.APIServer.SecretsEncrypted():
		out = append(out, Finding{Host: f.Host, Check: "running-cluster", Severity: Error,
			Message: "the API server here encrypts Secrets in etcd, but spec.apiServer.encryptSecrets is false: without the key no API server could read them; keep it true"})
	case f.APIServer != "" && !f.Running.EncryptsSecrets && c.Spec.APIServer.SecretsEncrypted(): // an API server privcloud installed
		out = append(out, Finding{Host: f.Host, Check: "running-cluster", Severity: Warning,
			Message: "this run turns on the encryption of Secrets in etcd for a running cluster: the Secrets already stored stay unencrypted until written again; run 'privcloud secrets rotate-key' after it, which writes every Secret again"})
	}
	return out
}

// sameSetting compares two values of a network setting as addresses or prefixes where both are one (IPv6
// has many spellings of each), else as text.
func sameSetting(a, b string) bool {
	if pa, err := netip.ParsePrefix(a); err == nil {
		pb, err := netip.ParsePrefix(b)
		return err == nil && pa == pb
	}
	if aa, err := netip.ParseAddr(a); err == nil {
		ab, err := netip.ParseAddr(b)
		return err == nil && aa == ab
	}
	return a == b
}

// checkRolesKept refuses a host that runs an etcd member or an API server while cluster.yaml no longer gives it
// the role: init would leave them running unmanaged, and the member would keep counting toward etcd's quorum.
// Such a host leaves its role through 'reset --hosts', before cluster.yaml drops it.
func checkRolesKept(f Facts, h api.Host) []Finding {
	var out []Finding
	for _, r := range []struct {
		runs bool
		role api.Role
		what string
	}{{f.Etcd != "", api.RoleEtcd, "an etcd member"}, {f.APIServer != "", api.RoleControlPlane, "an API server"}} {
		if r.runs && !h.HasRole(r.role) {
			out = append(out, Finding{Host: f.Host, Check: "roles", Severity: Error, Message: fmt.Sprintf(
				"the host runs %s, but cluster.yaml no longer gives it the %s role: a running host leaves a role through 'privcloud reset --hosts %s' (an etcd member leaves the cluster first), then it can join again with its new roles; or give it the role back",
				r.what, r.role, f.Host)})
		}
	}
	return out
}

// checkOneSegment refuses the bridge pod network on nodes that do not share a layer-2 segment: its routes send
// each node's pods straight to the other node's address, which must be on a subnet of the host's own.
func checkOneSegment(c *api.Cluster, facts []Facts) []Finding {
	if c.Spec.Network.Plugin != api.NetworkBridge {
		return nil
	}
	var out []Finding
	for _, f := range facts {
		if len(f.Subnets) == 0 {
			continue
		}
		var far []string
		for _, other := range c.Spec.Hosts {
			addr, err := netip.ParseAddr(other.InternalAddress)
			if other.Name == f.Host || !other.IsNode() || err != nil || !addr.Is4() {
				continue
			}
			if !slices.ContainsFunc(f.Subnets, func(s string) bool { p, err := netip.ParsePrefix(s); return err == nil && p.Contains(addr) }) {
				far = append(far, fmt.Sprintf("%s (%s)", other.Name, addr))
			}
		}
		if len(far) > 0 {
			out = append(out, Finding{Host: f.Host, Check: "pod-network", Severity: Error, Message: fmt.Sprintf(
				"%s not on this host's segments (%s): the bridge pod network needs every node on one layer-2 segment; use spec.network.plugin: flannel, which crosses routed subnets",
				strings.Join(far, ", ")+map[bool]string{true: " is", false: " are"}[len(far) == 1], strings.Join(f.Subnets, ", "))})
		}
	}
	return out
}

// checkServices judges a running cluster's etcd and API servers: etcd without quorum, or no API server ready,
// is an error naming every member's state; a member or an API server down while the others carry on is a
// warning naming it. Hosts privcloud installed nothing on yet count for nothing; an etcd host that did not
// answer counts as a member down once the cluster has any.
func checkServices(c *api.Cluster, facts []Facts) []Finding {
	var out []Finding
	byHost := map[string]Facts{}
	for _, f := range facts {
		byHost[f.Host] = f
	}
	var members, down []string
	healthy, installed := 0, 0
	for _, h := range c.Spec.HostsWithRole(api.RoleEtcd) {
		f, answered := byHost[h.Name]
		switch {
		case !answered:
			members, down = append(members, h.Name), append(down, h.Name+": unreachable")
		case f.Etcd == "":
		case f.Etcd == "healthy":
			members, healthy, installed = append(members, h.Name), healthy+1, installed+1
		default:
			members, down, installed = append(members, h.Name), append(down, h.Name+": "+f.Etcd), installed+1
		}
	}
	if installed > 0 && len(down) > 0 {
		quorum := len(members)/2 + 1
		if healthy < quorum {
			out = append(out, Finding{Check: "etcd-quorum", Severity: Error, Message: fmt.Sprintf(
				"etcd has lost quorum: %d of %d members healthy, %d needed (%s); the cluster can change nothing until enough members return: "+
					"start them (systemctl start etcd), or restore a backup (privcloud restore)", healthy, len(members), quorum, strings.Join(down, "; "))})
		} else {
			out = append(out, Finding{Check: "etcd", Severity: Warning, Message: fmt.Sprintf(
				"etcd member down (%s): %d of %d healthy, quorum kept; one more lost and the cluster stops", strings.Join(down, "; "), healthy, len(members))})
		}
	}
	var ready, apiDown []string
	for _, h := range c.Spec.HostsWithRole(api.RoleControlPlane) {
		switch f, answered := byHost[h.Name]; {
		case answered && f.APIServer == "ready":
			ready = append(ready, h.Name)
		case answered && f.APIServer != "":
			apiDown = append(apiDown, h.Name+": "+f.APIServer)
		}
	}
	switch {
	case len(apiDown) > 0 && len(ready) == 0:
		out = append(out, Finding{Check: "apiserver", Severity: Error, Message: "no API server is ready (" + strings.Join(apiDown, "; ") + ")"})
	case len(apiDown) > 0:
		out = append(out, Finding{Check: "apiserver", Severity: Warning, Message: fmt.Sprintf(
			"API server down (%s); the others (%s) carry on", strings.Join(apiDown, "; "), strings.Join(ready, ", "))})
	}
	return out
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// FailedError is a preflight with errors.
type FailedError struct{ Findings []Finding }

func (e *FailedError) Error() string {
	var b strings.Builder
	b.WriteString("preflight found problems:")
	for _, f := range e.Findings {
		if f.Severity != Error {
			continue
		}
		host := f.Host
		if host == "" {
			host = "cluster"
		}
		fmt.Fprintf(&b, "\n  %s: %s: %s", host, f.Check, f.Message)
	}
	return b.String()
}

// ExitClass is PhaseFailed: a check failed.
func (e *FailedError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func size(b uint64) string {
	const gib = 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.1f GiB", float64(b)/gib)
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Run connects to every host of the cluster, gathers the facts of those that answer and checks them. Hosts
// that cannot be reached are errors of their own and are reported with the findings.
func Run(ctx context.Context, d *ssh.Dialer, c *api.Cluster) ([]Facts, []Finding, error) {
	facts := make([]Facts, len(c.Spec.Hosts))
	errs := d.OnEach(ctx, c.Spec.Hosts, c.Spec.SSH.Concurrency, func(i int, cl *ssh.Client, err error) error {
		if err != nil {
			return err
		}
		facts[i], err = Gather(ctx, cl)
		return err
	})
	var got []Facts
	var unreachable []error
	for i, err := range errs {
		if err != nil {
			unreachable = append(unreachable, err)
			continue
		}
		got = append(got, facts[i])
	}
	findings := Check(c, got)
	for _, err := range unreachable {
		findings = append(findings, Finding{Check: "connect", Severity: Error, Message: err.Error()})
	}
	if len(unreachable) > 0 {
		return got, findings, errors.Join(unreachable...)
	}
	if HasErrors(findings) {
		return got, findings, &FailedError{Findings: findings}
	}
	return got, findings, nil
}
