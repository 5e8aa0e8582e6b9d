package phases

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
	"github.com/privcloud/privcloud/upgrade"
)

// serviceHost is a fake host running one service from the binary its link points at when it was last
// restarted; the binary of version crashing keeps exiting (systemd counts the restarts).
type serviceHost struct {
	*sshtest.Fake
	mu       sync.Mutex
	link     string
	exe      string
	restarts int // automatic restarts, as systemd counts them
	starts   int // restarts the switch asked for
	crashing string
}

var linkTarget = regexp.MustCompile(`ln -sfn '([^']+)'`)

func newServiceHost(running, crashing string) *serviceHost {
	h := &serviceHost{Fake: sshtest.NewFake("h1"), link: running, exe: running, crashing: crashing}
	h.OnCommandFunc("set -e", func(cmd string) (ssh.Result, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		var out strings.Builder
		if m := linkTarget.FindStringSubmatch(cmd); m != nil && m[1] != h.link {
			h.link = m[1]
			out.WriteString("/usr/local/bin/etcd\n")
		}
		if h.exe != h.link {
			h.exe = h.link
			h.starts++
			out.WriteString("restarted\n")
		}
		fmt.Fprintf(&out, "restarts %d\n", h.restarts)
		return ssh.Result{Stdout: []byte(out.String())}, nil
	})
	h.OnCommandFunc("systemctl show -p NRestarts", func(string) (ssh.Result, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if strings.Contains(h.exe, h.crashing) {
			h.restarts++ // systemd restarts it again and again
		}
		return ssh.Result{Stdout: []byte(fmt.Sprintf("NRestarts=%d\nActiveState=active\nSubState=running\nExe=%s\n", h.restarts, h.exe))}, nil
	})
	return h
}

func testUpgrade(t *testing.T, h *serviceHost) (*hostUpgrade, *bytes.Buffer) {
	t.Helper()
	gateLimit, gateEvery = 5*time.Second, time.Millisecond
	t.Cleanup(func() { gateLimit, gateEvery = 3*time.Minute, time.Second })
	var out bytes.Buffer
	r := &workflow.Run{Workflow: "upgrade", Cluster: api.Example(), Reporter: report.New(&out, report.Text)}
	return &hostUpgrade{run: r, target: &workflow.Target{Spec: api.Host{Name: "h1"}, Host: h}}, &out
}

var etcdService = upgradeService{unit: "etcd", binaries: []string{"etcd"},
	probe: func(*workflow.Run, *workflow.Target, string) (func(context.Context) error, func(), error) {
		return func(context.Context) error { return nil }, func() {}, nil
	}}

var etcdMove = []upgrade.Change{{Component: "etcd", From: "v3.6.0", To: "v3.6.5"}}

const (
	etcdOld = "/opt/privcloud/etcd/v3.6.0/etcd"
	etcdNew = "/opt/privcloud/etcd/v3.6.5/etcd"
)

func TestServiceSwitchPassesItsGate(t *testing.T) {
	h := newServiceHost(etcdOld, "never")
	u, _ := testUpgrade(t, h)
	if err := u.switchService(context.Background(), etcdService, etcdMove, func(c upgrade.Change) string { return c.To }); err != nil {
		t.Fatal(err)
	}
	if h.exe != etcdNew {
		t.Errorf("etcd runs %s, want %s", h.exe, etcdNew)
	}
	// a second switch to the same version restarts nothing
	if err := u.switchService(context.Background(), etcdService, etcdMove, func(c upgrade.Change) string { return c.To }); err != nil {
		t.Fatal(err)
	}
	if h.starts != 1 {
		t.Errorf("etcd was restarted %d times for one switch", h.starts)
	}
	if !strings.Contains(h.Commands()[0], "[ -x "+etcdNew+" ]") {
		t.Errorf("the switch must check the new binary is there first:\n%s", h.Commands()[0])
	}
}

func TestFailedGateSwitchesBack(t *testing.T) {
	h := newServiceHost(etcdOld, "v3.6.5")
	u, _ := testUpgrade(t, h)
	err := u.switchBack(context.Background(), etcdService, etcdMove, false,
		u.switchService(context.Background(), etcdService, etcdMove, func(c upgrade.Change) string { return c.To }))
	if err == nil {
		t.Fatal("a service that keeps exiting passed its gate")
	}
	for _, want := range []string{"etcd v3.6.5 failed its health gate on h1", "exited", "switched back to v3.6.0 automatically", "re-run 'privcloud upgrade apply'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the report lacks %q:\n%v", want, err)
		}
	}
	if h.link != etcdOld || h.exe != etcdOld {
		t.Errorf("after the switch back: link %s, running %s; want both %s", h.link, h.exe, etcdOld)
	}
}

func TestUnitState(t *testing.T) {
	h := sshtest.NewFake("h1")
	h.OnCommand("systemctl show", ssh.Result{Stdout: []byte("NRestarts=3\nActiveState=activating\nSubState=auto-restart\nExe=/opt/privcloud/kube-apiserver/v1.37.1/kube-apiserver\n")}, nil)
	st, err := unitState(context.Background(), h, "kube-apiserver")
	if err != nil || st.restarts != 3 || st.state != "activating/auto-restart" || st.exe != "/opt/privcloud/kube-apiserver/v1.37.1/kube-apiserver" {
		t.Errorf("unit state %+v, %v", st, err)
	}
}

func TestWatchCount(t *testing.T) {
	metrics := `# HELP apiserver_longrunning_requests [STABLE] Gauge of all active long-running apiserver requests
apiserver_longrunning_requests{component="apiserver",group="",resource="nodes",scope="cluster",subresource="",verb="WATCH",version="v1"} 3
apiserver_longrunning_requests{component="apiserver",group="discovery.k8s.io",resource="endpointslices",scope="cluster",subresource="",verb="WATCH",version="v1"} 7
apiserver_longrunning_requests{component="apiserver",group="discovery.k8s.io",resource="endpointslices",scope="namespace",subresource="",verb="WATCH",version="v1"} 2
apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="cluster",subresource="log",verb="CONNECT",version="v1"} 1
apiserver_request_total{resource="endpointslices",verb="WATCH"} 40
`
	if n := watchCount(metrics, "endpointslices"); n != 9 {
		t.Errorf("%d EndpointSlice watches, want 9", n)
	}
}

func TestMetricValue(t *testing.T) {
	text := "# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_total counter\nkubeproxy_sync_proxy_rules_endpoint_changes_pending 0\nkubeproxy_sync_proxy_rules_endpoint_changes_total 42\n"
	if n, err := kube.MetricValue(text, "kubeproxy_sync_proxy_rules_endpoint_changes_total"); err != nil || n != 42 {
		t.Errorf("endpoint changes %d, %v; want 42", n, err)
	}
	if _, err := kube.MetricValue("other 1\n", "kubeproxy_sync_proxy_rules_endpoint_changes_total"); err == nil {
		t.Error("a missing metric must be an error, not 0")
	}
}

func TestSwitchThatCannotStartIsNotAGateFailure(t *testing.T) {
	h := newServiceHost(etcdOld, "never")
	h.OnCommand("set -e", ssh.Result{ExitCode: 1, Stderr: []byte(etcdNew + " is missing")}, nil)
	u, _ := testUpgrade(t, h)
	err := u.switchBack(context.Background(), etcdService, etcdMove, false,
		u.switchService(context.Background(), etcdService, etcdMove, func(c upgrade.Change) string { return c.To }))
	if err == nil || !strings.Contains(err.Error(), "etcd could not be switched to v3.6.5 on h1") || strings.Contains(err.Error(), "health gate") ||
		strings.Contains(err.Error(), "cordoned") {
		t.Errorf("report: %v", err)
	}
}

func TestWorkersWaitForTheControlPlanes(t *testing.T) {
	var out bytes.Buffer
	c := api.Example()
	r := &workflow.Run{Workflow: "upgrade", Cluster: c, Reporter: report.New(&out, report.Text)}
	for _, h := range c.Spec.Hosts {
		r.Targets = append(r.Targets, &workflow.Target{Spec: h})
	}
	cp := c.Spec.HostsWithRole(api.RoleControlPlane)[0].Name
	u := &upgradeRun{opts: &UpgradeOptions{}, plan: upgrade.Plan{
		Hosts:   []upgrade.HostPlan{{Host: cp, Changes: []upgrade.Change{{Component: "kube-apiserver", From: "v1.36.3", To: "v1.37.1"}}}},
		Batches: [][]string{{cp}},
	}}
	err := u.upgradeBatches(context.Background(), r, false)
	if err == nil || !strings.Contains(err.Error(), "the control planes "+cp+" are not upgraded yet") {
		t.Errorf("workers before the control planes: %v", err)
	}
}
