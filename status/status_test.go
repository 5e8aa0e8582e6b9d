package status

import (
	"strings"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

func cluster() *api.Cluster {
	on := true
	return &api.Cluster{Metadata: api.ObjectMeta{Name: "lab"}, Spec: api.ClusterSpec{
		APILoadBalancer: api.APILoadBalancer{Enabled: &on},
		Network:         api.Network{Policy: api.NetworkPolicyKubeRouter},
		Hosts: []api.Host{
			{Name: "h1", Roles: []api.Role{api.RoleControlPlane, api.RoleEtcd}},
			{Name: "h2", Roles: []api.Role{api.RoleWorker}},
		}}}
}

const workerOutput = `component etcd - -
component kube-apiserver - -
component kube-controller-manager - -
component kube-scheduler - -
component kubectl - -
component containerd /opt/privcloud/containerd/v2.2.1/containerd active
component runc /opt/privcloud/runc/v1.3.0/runc -
component kubelet /opt/privcloud/kubelet/v1.37.1/kubelet inactive
component kube-proxy /opt/privcloud/kube-proxy/v1.37.1/kube-proxy active
component privcloud-api-lb /opt/privcloud/privcloud-api-lb/v0.0.0/privcloud-api-lb active
component kube-router /usr/bin/kube-router -
record init {  "containerd/config": {"completedAt": "2026-11-29T10:00:00Z", "durationMs": 5},  "kubelet": {"completedAt": "2026-11-29T10:05:00Z", "durationMs": 9}}
record upgrade {"workers": {"completedAt": "2026-11-29T09:00:00Z", "durationMs": 1}}
`

func TestParseHost(t *testing.T) {
	c := cluster()
	var h Host
	if m := parseHost(&h, &c.Spec, c.Spec.Hosts[1], workerOutput, ""); m != nil {
		t.Errorf("a worker has no etcd member: %+v", m)
	}
	var got []string
	for _, comp := range h.Components {
		got = append(got, comp.Name+"="+comp.Version+"/"+comp.State)
	}
	want := "containerd=v2.2.1/active runc=v1.3.0/ kubelet=v1.37.1/inactive kube-proxy=v1.37.1/active privcloud-api-lb=v0.0.0/active kube-router=/"
	if strings.Join(got, " ") != want {
		t.Errorf("components:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if h.LastRun == nil || h.LastRun.Workflow != "init" || h.LastRun.Phase != "kubelet" || !h.LastRun.CompletedAt.Equal(time.Date(2026, 11, 29, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("last run: %+v", h.LastRun)
	}

	var cp Host
	m := parseHost(&cp, &c.Spec, c.Spec.Hosts[0], `component etcd /opt/privcloud/etcd/v3.7.0/etcd active
etcd-status [{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":1,"member_id":42,"revision":9,"raft_term":2},"version":"3.7.0","dbSize":2125824,"leader":42,"raftIndex":10}}]
`, "healthy")
	if m == nil || !m.Leader || m.DBSizeBytes != 2125824 || m.Version != "3.7.0" || m.Health != "healthy" {
		t.Errorf("etcd member: %+v", m)
	}
}

func TestProblemsNameHostAndComponent(t *testing.T) {
	c := cluster()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	rep := &Report{Time: now,
		Hosts: []Host{
			{Name: "h1", Reachable: true, APIServer: "not ready: [-]etcd failed", Components: []Component{
				{Name: "etcd", Version: "v3.7.0", Unit: "etcd", State: "active", Expected: true}}},
			{Name: "h2", Reachable: true, Components: []Component{
				{Name: "kubelet", Version: "v1.37.1", Unit: "kubelet", State: "inactive", Expected: true},
				{Name: "kube-router", Unit: "privcloud-kube-router", Expected: true},
				{Name: "runc", Version: "v1.3.0", Expected: true}}},
			{Name: "h3", Error: "dial tcp 10.77.0.13:22: connect: no route to host"},
		},
		Etcd: []EtcdMember{{Host: "h1", Health: "unhealthy: context deadline exceeded"}, {Host: "h4", Health: "healthy"},
			{Host: "h5", Health: "unhealthy: connection refused"}},
		Nodes: []Node{{Name: "h1", Ready: true}, {Name: "h2", Ready: false, Reason: "KubeletNotReady: PLEG is not healthy"}},
		Certificates: []Certificate{{Name: "apiserver", NotAfter: now.Add(10 * 24 * time.Hour), ExpiresInDays: 10},
			{Name: "etcd/server", NotAfter: now.Add(-time.Hour), ExpiresInDays: -1}},
		Addons: []Addon{{Name: "coredns", State: "ready"}, {Name: "quay", State: "not ready", Detail: "the bundle records quay 3.12 as absent"}},
	}
	c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "h3", Roles: []api.Role{api.RoleWorker}})
	ps := problems(c, rep)
	sortProblems(ps)
	var got []string
	for _, p := range ps {
		got = append(got, p.Severity+" "+p.Host+" "+p.Component+": "+p.Message)
	}
	want := []string{
		"error  add-on quay: not ready: the bundle records quay 3.12 as absent",
		"error  certificate etcd/server: expired on 2026-11-29: privcloud certs renew",
		"error  etcd: etcd has lost quorum: 1 of 3 members healthy, 2 needed (down: h1, h5); start the members that are down",
		"error h1 etcd: member unhealthy: context deadline exceeded",
		"error h1 kube-apiserver: not ready: [-]etcd failed",
		"error h2 kube-router: not installed (privcloud init or join installs it)",
		"error h2 kubelet: kubelet is inactive (journalctl -u kubelet; systemctl start kubelet)",
		"error h2 node: not Ready: KubeletNotReady: PLEG is not healthy",
		"error h3 host: unreachable: dial tcp 10.77.0.13:22: connect: no route to host",
		"error h3 node: not registered with the API server",
		"error h5 etcd: member unhealthy: connection refused",
		"warning  certificate apiserver: expires on 2026-12-09, in 10 days: privcloud certs renew",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// With quorum, a cluster whose members name no leader says so; with a leader and quorum, etcd is no problem.
func TestEtcdLeaderProblemsWithQuorum(t *testing.T) {
	c := cluster()
	for _, tc := range []struct {
		members []EtcdMember
		want    string
	}{
		{[]EtcdMember{{Host: "h1", Health: "healthy"}, {Host: "h4", Health: "healthy"}, {Host: "h5", Health: "unhealthy: connection refused"}},
			"etcd: no member reports itself as the leader\nh5 etcd: member unhealthy: connection refused"},
		{[]EtcdMember{{Host: "h1", Health: "healthy", Leader: true}, {Host: "h4", Health: "healthy"}}, ""},
	} {
		var got []string
		ps := problems(c, &Report{Time: time.Now(), Etcd: tc.members})
		sortProblems(ps)
		for _, p := range ps {
			if p.Component == "etcd" {
				got = append(got, strings.TrimSpace(p.Host+" "+p.Component+": "+p.Message))
			}
		}
		if strings.Join(got, "\n") != tc.want {
			t.Errorf("%+v: problems\n%s\nwant\n%s", tc.members, strings.Join(got, "\n"), tc.want)
		}
	}
}
