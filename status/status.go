// Package status looks at a running cluster, read-only and at once: every host and the services privcloud
// installed on it, etcd's members, the API servers, the nodes, the certificates that expire soonest and the
// add-ons, with what is wrong listed first. 'privcloud status' prints it; its JSON form is stable (fields are
// only ever added) and documented in README.md.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/preflight"
	"github.com/privcloud/privcloud/ssh"
)

// Report is the cluster as it is.
type Report struct {
	Cluster string    `json:"cluster"`
	Time    time.Time `json:"time"`
	// Healthy: no problem of severity error. A warning (a certificate near its end) leaves the cluster healthy.
	Healthy      bool          `json:"healthy"`
	Problems     []Problem     `json:"problems"`
	Hosts        []Host        `json:"hosts"`
	Etcd         []EtcdMember  `json:"etcd"`
	Nodes        []Node        `json:"nodes"`
	Certificates []Certificate `json:"certificates"`
	Addons       []Addon       `json:"addons"`
	// Seconds is how long the look took.
	Seconds float64 `json:"seconds"`
}

// Problem is one thing wrong, named by host and component.
type Problem struct {
	Severity  string `json:"severity"` // error: the cluster is degraded; warning: it will be
	Host      string `json:"host,omitempty"`
	Component string `json:"component"`
	Message   string `json:"message"`
}

// Host is one host of cluster.yaml.
type Host struct {
	Name      string   `json:"name"`
	Address   string   `json:"address"`
	Roles     []string `json:"roles"`
	Reachable bool     `json:"reachable"`
	Error     string   `json:"error,omitempty"` // why it is not reachable
	OS        string   `json:"os,omitempty"`
	Kernel    string   `json:"kernel,omitempty"`
	// APIServer is a control plane's API server: "ready", or why not.
	APIServer  string      `json:"apiServer,omitempty"`
	Components []Component `json:"components,omitempty"`
	LastRun    *LastRun    `json:"lastRun,omitempty"`
}

// Component is one program privcloud installs on a host.
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"` // of the active binary; "" when it is not installed
	Unit    string `json:"unit,omitempty"`    // its systemd unit, when it runs as one
	State   string `json:"state,omitempty"`   // the unit's state: active, inactive, failed, activating, ...
	// Expected: the host's roles and cluster.yaml call for it.
	Expected bool `json:"expected"`
}

// LastRun is the newest phase a privcloud run completed on a host.
type LastRun struct {
	Workflow    string    `json:"workflow"`
	Phase       string    `json:"phase"`
	CompletedAt time.Time `json:"completedAt"`
}

// EtcdMember is one host's etcd member as it answers about itself.
type EtcdMember struct {
	Host        string `json:"host"`
	Health      string `json:"health"` // healthy, or why not
	Leader      bool   `json:"leader"`
	DBSizeBytes int64  `json:"dbSizeBytes,omitempty"`
	Version     string `json:"version,omitempty"`
}

// Node is one Kubernetes node.
type Node struct {
	Name    string `json:"name"`
	Ready   bool   `json:"ready"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"` // why it is not Ready
}

// Certificate is one certificate or kubeconfig of the state directory's PKI.
type Certificate struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind"`
	NotAfter      time.Time `json:"notAfter,omitzero"`
	ExpiresInDays int       `json:"expiresInDays"`
	Problem       string    `json:"problem,omitempty"`
}

// Addon is one add-on.
type Addon struct {
	Name   string `json:"name"`
	State  string `json:"state"` // ready, not ready, disabled
	Detail string `json:"detail,omitempty"`
}

// CertificatesShown is how many of the soonest-expiring certificates a report lists (all with a problem too).
const CertificatesShown = 5

// CertificateWarning is how close to its end a certificate is reported.
const CertificateWarning = 30 * 24 * time.Hour

// component is a program privcloud installs: its binary's name, its unit and the hosts that run it.
type component struct {
	name, unit string
	roles      []api.Role
	when       func(*api.ClusterSpec) bool
}

var (
	nodeRoles = []api.Role{api.RoleControlPlane, api.RoleWorker}
	always    = func(*api.ClusterSpec) bool { return true }
)

// components are in the order a host's services start.
var components = []component{
	{"etcd", "etcd", []api.Role{api.RoleEtcd}, always},
	{"kube-apiserver", "kube-apiserver", []api.Role{api.RoleControlPlane}, always},
	{"kube-controller-manager", "kube-controller-manager", []api.Role{api.RoleControlPlane}, always},
	{"kube-scheduler", "kube-scheduler", []api.Role{api.RoleControlPlane}, always},
	{"kubectl", "", []api.Role{api.RoleControlPlane}, always},
	{"containerd", "containerd", nodeRoles, always},
	{"runc", "", nodeRoles, always},
	{"kubelet", "kubelet", nodeRoles, always},
	{"kube-proxy", "kube-proxy", nodeRoles, always},
	{"privcloud-api-lb", pki.APILoadBalancerUnit, nodeRoles, func(s *api.ClusterSpec) bool { return s.APILoadBalancer.On() }},
	{"kube-router", pki.KubeRouterUnit, nodeRoles, func(s *api.ClusterSpec) bool { return s.Network.PolicyEnforced() }},
	{"flanneld", pki.FlannelUnit, nodeRoles, func(s *api.ClusterSpec) bool { return s.Network.Flannel() }},
	{pki.MetricsUnit, pki.MetricsUnit, []api.Role{api.RoleControlPlane, api.RoleWorker, api.RoleEtcd},
		func(s *api.ClusterSpec) bool { return s.Addons.Monitoring.Enabled }},
}

// hostScript prints, read-only: a line per component (its active link and its unit's state), the host's etcd
// member's own status, and each workflow's phase records (one line of JSON each).
func hostScript() string {
	var b strings.Builder
	b.WriteString("for c in")
	for _, c := range components {
		fmt.Fprintf(&b, " %s:%s", c.name, c.unit)
	}
	b.WriteString(`; do
  name=${c%%:*}; unit=${c#*:}; state=-
  [ -n "$unit" ] && [ -f "/etc/systemd/system/$unit.service" ] && state=$(systemctl is-active "$unit" 2>/dev/null)
  printf 'component %s %s %s\n' "$name" "$(readlink "/usr/local/bin/$name" 2>/dev/null || echo -)" "${state:--}"
done
if [ -f /etc/systemd/system/etcd.service ] && systemctl is-active -q etcd; then
  printf 'etcd-status %s\n' "$(` + hostops.EtcdctlBase + ` --dial-timeout=2s --command-timeout=3s endpoint status -w json 2>/dev/null | tr -d '\n')"
fi
for f in ` + workflow.RecordDir + `/*.json; do
  [ -f "$f" ] && printf 'record %s %s\n' "$(basename "$f" .json)" "$(tr -d '\n' < "$f")"
done
true`)
	return b.String()
}

// Gather looks at the cluster: every host at once, then the API through the first control plane whose API
// server is ready. A host that cannot be reached is reported, and the rest still are.
func Gather(ctx context.Context, c *api.Cluster, d *ssh.Dialer, now time.Time) *Report {
	start := time.Now()
	rep := &Report{Cluster: c.Metadata.Name, Time: now.UTC(), Problems: []Problem{}}
	hosts := make([]Host, len(c.Spec.Hosts))
	members := make([]*EtcdMember, len(c.Spec.Hosts))
	var apiOnce sync.Mutex
	apiDone := false
	d.OnEach(ctx, c.Spec.Hosts, c.Spec.SSH.Concurrency, func(i int, cl *ssh.Client, err error) error {
		spec := c.Spec.Hosts[i]
		h := &hosts[i]
		h.Name, h.Address = spec.Name, spec.Address
		for _, r := range spec.Roles {
			h.Roles = append(h.Roles, string(r))
		}
		if err != nil {
			h.Error = err.Error()
			return nil
		}
		h.Reachable = true
		facts, err := preflight.Gather(ctx, cl)
		if err != nil {
			h.Error = err.Error()
			return nil
		}
		h.OS, h.Kernel, h.APIServer = facts.OS, facts.Kernel, facts.APIServer
		res, err := cl.Run(ctx, hostScript(), ssh.ReadOnly())
		if err != nil {
			h.Error = "reading its services: " + err.Error()
			return nil
		}
		members[i] = parseHost(h, &c.Spec, spec, string(res.Stdout), facts.Etcd)
		// the API is read once, through the first control plane found ready
		if facts.APIServer == "ready" {
			apiOnce.Lock()
			mine := !apiDone
			apiDone = true
			apiOnce.Unlock()
			if mine {
				readAPI(ctx, c, cl, rep)
			}
		}
		return nil
	})
	rep.Hosts = hosts
	for _, m := range members {
		if m != nil {
			rep.Etcd = append(rep.Etcd, *m)
		}
	}
	if !apiDone && len(c.Spec.HostsWithRole(api.RoleControlPlane)) > 0 {
		rep.Problems = append(rep.Problems, Problem{Severity: "error", Component: "kube-apiserver",
			Message: "no API server is ready: nodes and add-ons could not be read"})
	}
	rep.Certificates = certificates(c, now)
	rep.Problems = append(problems(c, rep), rep.Problems...)
	sortProblems(rep.Problems)
	rep.Healthy = true
	for _, p := range rep.Problems {
		if p.Severity == "error" {
			rep.Healthy = false
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep
}

// parseHost reads hostScript's output into h and returns the host's etcd member, if it has one.
func parseHost(h *Host, spec *api.ClusterSpec, host api.Host, out, etcdHealth string) *EtcdMember {
	byName := map[string]Component{}
	runs := map[string]map[string]workflow.Record{}
	var member *EtcdMember
	if etcdHealth != "" {
		member = &EtcdMember{Host: h.Name, Health: etcdHealth}
	}
	for _, line := range strings.Split(out, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "component":
			f := strings.Fields(rest)
			if len(f) != 3 {
				continue
			}
			comp := Component{Name: f[0], Version: phases.BinaryVersion(f[0], f[1])}
			if f[2] != "-" {
				comp.State = f[2]
			}
			byName[f[0]] = comp
		case "etcd-status":
			if member != nil {
				readEtcdStatus(member, rest)
			}
		case "record":
			name, data, _ := strings.Cut(rest, " ")
			var recs map[string]workflow.Record
			if json.Unmarshal([]byte(data), &recs) == nil {
				runs[name] = recs
			}
		}
	}
	for _, c := range components {
		comp := byName[c.name]
		comp.Name = c.name
		comp.Expected = slices.ContainsFunc(c.roles, host.HasRole) && c.when(spec)
		if comp.Expected || comp.Version != "" {
			comp.Unit = c.unit
			h.Components = append(h.Components, comp)
		}
	}
	h.LastRun = lastRun(runs)
	return member
}

// readEtcdStatus reads etcdctl's endpoint status of the member itself.
func readEtcdStatus(m *EtcdMember, data string) {
	var st []struct {
		Status struct {
			Header struct {
				MemberID uint64 `json:"member_id"`
			} `json:"header"`
			Version string `json:"version"`
			DBSize  int64  `json:"dbSize"`
			Leader  uint64 `json:"leader"`
		}
	}
	if json.Unmarshal([]byte(data), &st) != nil || len(st) != 1 {
		return
	}
	s := st[0].Status
	m.Version, m.DBSizeBytes = s.Version, s.DBSize
	m.Leader = s.Leader != 0 && s.Leader == s.Header.MemberID
}

// lastRun is the newest phase record of any workflow.
func lastRun(runs map[string]map[string]workflow.Record) *LastRun {
	var last *LastRun
	for wf, recs := range runs {
		for phase, r := range recs {
			if last == nil || r.CompletedAt.After(last.CompletedAt) {
				last = &LastRun{Workflow: strings.ReplaceAll(wf, "-", " "), Phase: phase, CompletedAt: r.CompletedAt.UTC()}
			}
		}
	}
	return last
}

// readAPI lists the nodes and the add-ons' state through one control plane's connection.
func readAPI(ctx context.Context, c *api.Cluster, cl *ssh.Client, rep *Report) {
	client, err := kube.New(phases.PKIStore(c).KubeconfigPath("super-admin"), "127.0.0.1:6443", cl.Dial)
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{Severity: "error", Host: cl.Name(), Component: "kube-apiserver", Message: err.Error()})
		return
	}
	defer client.Close()
	list, err := client.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{Severity: "error", Host: cl.Name(), Component: "kube-apiserver", Message: "listing nodes: " + err.Error()})
	}
	if list != nil {
		for _, n := range list.Items {
			node := Node{Name: n.Name, Ready: kube.NodeReady(&n), Version: n.Status.NodeInfo.KubeletVersion}
			if !node.Ready {
				node.Reason = notReadyReason(n.Status.Conditions)
			}
			rep.Nodes = append(rep.Nodes, node)
		}
	}
	sort.Slice(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Name < rep.Nodes[j].Name })
	st, err := phases.AddonsStatus(ctx, c, func(context.Context, api.Host) (ssh.Host, error) { return keepOpen{cl}, nil })
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{Severity: "warning", Component: "add-ons", Message: "could not be read: " + err.Error()})
		return
	}
	for _, a := range st {
		ad := Addon{Name: a.Addon, State: "ready"}
		switch {
		case a.Disabled != "":
			ad.State = "disabled"
		case !a.Ready:
			ad.State = "not ready"
			var why []string
			why = append(why, a.Missing...)
			for _, o := range a.Objects {
				if o.State != "ready" {
					why = append(why, strings.TrimSpace(o.Object+" "+o.State+" "+o.Detail))
				}
			}
			ad.Detail = strings.Join(why, "; ")
		}
		rep.Addons = append(rep.Addons, ad)
	}
}

// keepOpen lends a connection to code that closes what it is given.
type keepOpen struct{ ssh.Host }

func (keepOpen) Close() error { return nil }

func notReadyReason(conds []corev1.NodeCondition) string {
	for _, c := range conds {
		if c.Type == corev1.NodeReady {
			return strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	return "no Ready condition"
}

// certificates are the state directory's certificates and kubeconfigs that expire soonest, and every one
// with a problem.
func certificates(c *api.Cluster, now time.Time) []Certificate {
	tree, err := pki.TreeFor(c)
	if err != nil {
		return []Certificate{{Name: "pki", Problem: err.Error()}}
	}
	var all []Certificate
	for _, e := range pki.CheckExpiration(phases.PKIStore(c), tree, now) {
		if e.External && e.Problem != "" {
			continue // an external CA's files privcloud does not keep
		}
		cert := Certificate{Name: e.Name, Kind: e.Kind, NotAfter: e.NotAfter, Problem: e.Problem}
		if !e.NotAfter.IsZero() {
			cert.ExpiresInDays = int(e.NotAfter.Sub(now).Hours() / 24)
		}
		all = append(all, cert)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if (all[i].Problem != "") != (all[j].Problem != "") {
			return all[i].Problem != ""
		}
		return all[i].NotAfter.Before(all[j].NotAfter)
	})
	var out []Certificate
	for i, cert := range all {
		if i < CertificatesShown || cert.Problem != "" {
			out = append(out, cert)
		}
	}
	return out
}

// Size is bytes as people read them.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<10), 'f', 0, 64) + " KiB"
}
