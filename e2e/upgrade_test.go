//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/internal/wait"
)

// TestUpgradeOnLabHosts brings a 3-node cluster up on the release before the lab's, from a bundle that carries
// both, plans its upgrade from the versions the hosts run and applies it while a client requests a Service
// continuously: first with a broken API server binary (switched back automatically), then for real.
func TestUpgradeOnLabHosts(t *testing.T) {
	// the bridge pod network, on the lab's one segment: the scenario that keeps it proven
	l := newLab(t, 3)
	withSettings(t, l, "cluster.yaml", "  network:\n", "  network:\n    plugin: bridge\n")
	labBundleOf(t, l.Dir, []string{"v1.36.3", "v1.37.1"}, append(upgradeBundle, "probe", "busybox", "test")...)
	older := configVariant(t, l, "cluster-older.yaml", "kubernetesVersion: v1.37.1", "kubernetesVersion: v1.36.3")
	r := runConfig(t, older, "init", "--skip", "addons")
	if r.code != 0 {
		fatalf(t, "init on v1.36.3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers")
	if strings.Count(r.stdout, " Ready ") != 3 || strings.Count(r.stdout, "v1.36.3") != 3 {
		fatalf(t, "3 Ready nodes on v1.36.3:\n%s%s", r.stdout, r.stderr)
	}
	checkPlanFromOlder(t, l)
	// a dry run shows what would change and changes nothing
	r = run(t, l, "upgrade", "apply", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would run: upgrade kube-apiserver v1.36.3 -> v1.37.1") ||
		!strings.Contains(r.stdout, "would run: cordon and drain node h2") {
		errorf(t, "upgrade apply --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if server, _ := versions(t, l); server != "v1.36.3" {
		errorf(t, "a dry run upgraded the API server to %s", server)
	}

	// a Deployment behind a NodePort Service, its pods spread over the nodes and guarded by a budget
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"apply -f - <<'EOF'\n"+webApp+"EOF\n"+kubectl+"rollout status deployment/web --timeout=180s")
	if r.code != 0 {
		fatalf(t, "web Deployment: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	client := startServiceClient(t, 30080, lab.HostIP(1), lab.HostIP(2), lab.HostIP(3))
	defer client.stop()
	if err := client.waitServing(time.Minute); err != nil {
		fatalf(t, "the Service does not answer: %v", err)
	}
	client.reset() // what counts is from here: every node answers

	// the new API server binary exits at once: its gate fails, it is switched back, the cluster keeps serving
	r = run(t, l, "upgrade", "apply", "--only", "bundle")
	if r.code != 0 {
		fatalf(t, "upgrade apply --only bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", "printf '#!/bin/sh\\necho broken on purpose >&2\\nexit 1\\n' > /opt/privcloud/kube-apiserver/v1.37.1/kube-apiserver")
	if r.code != 0 {
		fatalf(t, "break kube-apiserver v1.37.1: %s%s", r.stdout, r.stderr)
	}
	start := time.Now()
	r = run(t, l, "upgrade", "apply", "--skip", "bundle")
	t.Logf("upgrade with a broken API server, switched back: %s", time.Since(start).Round(100*time.Millisecond))
	out := r.stdout + r.stderr
	if r.code != 5 || !strings.Contains(out, "kube-apiserver v1.37.1 failed its health gate on h1") || !strings.Contains(out, "exited") ||
		!strings.Contains(out, "switched back to v1.36.3 automatically") || !strings.Contains(out, "broken on purpose") {
		fatalf(t, "upgrade with a broken API server: exit %d\n%s", r.code, out)
	}
	t.Logf("its report:\n%s", out)
	if server, nodes := versions(t, l); server != "v1.36.3" || strings.Count(nodes, " Ready ") != 3 || strings.Count(nodes, "v1.36.3") != 3 {
		fatalf(t, "after the switch back the cluster runs v1.36.3 everywhere: API server %s, nodes:\n%s", server, nodes)
	}
	if err := client.waitServing(time.Minute); err != nil {
		fatalf(t, "the Service does not answer after the switch back: %v", err)
	}

	// the real upgrade: the bundle phase puts the true binary back (its sha256 differs)
	start = time.Now()
	r = run(t, l, "upgrade", "apply", "-o", "json")
	t.Logf("upgrade v1.36.3 -> v1.37.1 of 3 nodes: %s", time.Since(start).Round(100*time.Millisecond))
	if r.code != 0 || !strings.Contains(r.stdout, `"phase":"backup"`) {
		fatalf(t, "upgrade apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("its events:\n%s", timeline(r.stdout))
	if server, nodes := versions(t, l); server != "v1.37.1" || strings.Count(nodes, " Ready ") != 3 || strings.Count(nodes, "v1.37.1") != 3 {
		fatalf(t, "after the upgrade every node is Ready on v1.37.1: API server %s, nodes:\n%s", server, nodes)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes -o jsonpath='{range .items[*]}{.metadata.name} unschedulable={.spec.unschedulable}{\"\\n\"}{end}'; "+
		kubectl+"get deployment web -o jsonpath='available={.status.availableReplicas}{\"\\n\"}'")
	if strings.Contains(r.stdout, "unschedulable=true") || !strings.Contains(r.stdout, "available=3") {
		errorf(t, "after the upgrade no node is cordoned and the Deployment is available:\n%s%s", r.stdout, r.stderr)
	}
	start = time.Now()
	r = run(t, l, "upgrade", "apply")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "re-running the finished upgrade changed something: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("upgrade re-run: %s", time.Since(start).Round(100*time.Millisecond))
	r = run(t, l, "upgrade", "plan")
	if r.code != 0 || !strings.Contains(r.stdout, "every host runs v1.37.1: nothing to upgrade") {
		errorf(t, "upgrade plan after the upgrade: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	st := client.stop()
	t.Logf("service client: %s; failed requests:\n%s", st, strings.Join(st.failures, "\n"))
	if st.ok == 0 || st.longestOutage > 10*time.Second {
		errorf(t, "the Service was out for more than a brief window: %s", st)
	}
}

// timeline renders a run's JSON events as one line each: time, status, phase, host, message.
func timeline(ndjson string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(ndjson), "\n") {
		var e struct {
			Time                         time.Time
			Status, Phase, Host, Message string
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Status != "started" {
			fmt.Fprintf(&b, "%s %-8s %-14s %-3s %s\n", e.Time.Format("15:04:05.000"), e.Status, e.Phase, e.Host, e.Message)
		}
	}
	return b.String()
}

// versions is the API server's version and the nodes as kubectl lists them.
func versions(t *testing.T, l *lab.Lab) (string, string) {
	t.Helper()
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get --raw /version")
	var v struct{ GitVersion string }
	if err := json.Unmarshal([]byte(r.stdout[strings.Index(r.stdout, "{"):strings.LastIndex(r.stdout, "}")+1]), &v); err != nil {
		fatalf(t, "API server version: %v\n%s%s", err, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers")
	return v.GitVersion, r.stdout
}

// upgradeBundle is what a cluster without add-ons needs, for a bundle of v1.36.3 and v1.37.1 (Multus's plugin
// included: it is part of each node's configuration while spec.addons.multus is on).
var upgradeBundle = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "cni-bridge", "cni-host-local", "cni-loopback", "cni-portmap", "cni-flannel", "flanneld", "cni-multus",
	"privcloud-api-lb", "kube-router", "etcd", "etcdctl", "etcdutl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "pause-bin", "pause"}

// TestUpgradeControlPlanesOnLabHosts upgrades three stacked control planes, one host at a time: each one's etcd
// member (v3.6 to v3.7, quorum kept by the two others), API server, controller-manager and scheduler while the
// others' run, then each node, drained into the two others.
func TestUpgradeControlPlanesOnLabHosts(t *testing.T) {
	l := newLab(t, 3, 1, 2, 3)
	// the cluster starts from the bundle of the older release, with etcd of the minor before the lab's; the
	// bundle of cluster.yaml is the next release's
	buildLabBundle(t, filepath.Join(l.Dir, "bundle-before.tar.zst"), []string{"v1.36.3"}, "v3.6.16", upgradeBundle...)
	// the next release also brings an image the cluster has not had: it must be on every node before anything switches
	labBundleOf(t, l.Dir, []string{"v1.37.1"}, slices.Concat(upgradeBundle, []string{"pulled"})...)
	older := configVariant(t, l, "cluster-older.yaml", "kubernetesVersion: v1.37.1",
		"kubernetesVersion: v1.36.3\n  bundle:\n    path: bundle-before.tar.zst")
	r := runPrivcloud(t, "bundle", "diff", filepath.Join(l.Dir, "bundle-before.tar.zst"), filepath.Join(l.Dir, "privcloud-bundle.tar.zst"))
	for _, change := range []string{"etcd                     binary  version  v3.6.16      v3.7.0", "kube-apiserver           binary  version  v1.36.3      v1.37.1",
		"kubelet                  binary  version  v1.36.3      v1.37.1", "pulled                   image   added    -            1"} {
		if r.code != 0 || !strings.Contains(r.stdout, change) {
			errorf(t, "bundle diff between the two releases lacks %q: exit %d\n%s%s", change, r.code, r.stdout, r.stderr)
		}
	}
	r = runConfig(t, older, "init", "--skip", "addons")
	if r.code != 0 {
		fatalf(t, "init of 3 control planes on v1.36.3 with etcd v3.6.16: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "upgrade", "plan")
	// control planes alone in the lab are workers too
	if r.code != 0 || !strings.Contains(r.stdout, "h2           control-plane,etcd,worker etcd                     v3.6.16    v3.7.0") ||
		!strings.Contains(r.stdout, "order: h1; then h2; then h3") || !strings.Contains(r.stdout, "the bundle, against lab (the last one the cluster ran):") ||
		!strings.Contains(r.stdout, "etcd                     binary  version  v3.6.16      v3.7.0") {
		errorf(t, "upgrade plan with etcd: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// init and join leave versions alone: with v1.37.1 in cluster.yaml, init stops before changing anything
	r = run(t, l, "init", "--skip", "addons")
	if r.code != 5 || !strings.Contains(r.stdout+r.stderr, "kube-apiserver v1.36.3 (not v1.37.1)") || !strings.Contains(r.stdout+r.stderr, "privcloud upgrade apply") {
		fatalf(t, "init on hosts running v1.36.3 with v1.37.1 in cluster.yaml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// a client reads the API through h3's load balancer all along: each API server restarts in turn
	node, err := l.Connect(context.Background(), "h3")
	if err != nil {
		fatal(t, err)
	}
	defer node.Close()
	api := apiProbe(t, l, node)
	start := time.Now()
	r = run(t, l, "upgrade", "apply", "-o", "json")
	api.end()
	t.Logf("upgrade v1.36.3 -> v1.37.1 of 3 control planes: %s", time.Since(start).Round(100*time.Millisecond))
	total, failed := api.between(start, time.Now())
	t.Logf("BENCH upgrade of 3 control planes: api-requests=%d api-failed=%d%s", total, len(failed), describe(failed, start))
	if r.code != 0 {
		fatalf(t, "upgrade apply: exit %d\n%s%s", r.code, timeline(r.stdout), r.stderr)
	}
	events := timeline(r.stdout)
	t.Logf("its events:\n%s", events)
	checkImagesBeforeSwitch(t, r.stdout, pulledImageRef, "h1", "h2", "h3")
	for _, unit := range []string{"etcd restarted on v3.7.0", "kube-apiserver restarted on v1.37.1", "kube-controller-manager restarted on v1.37.1",
		"kube-scheduler restarted on v1.37.1", "kubelet restarted on v1.37.1", "kube-proxy restarted on v1.37.1"} {
		if n := strings.Count(events, unit); n != 3 {
			errorf(t, "%q %d times, want once on each host", unit, n)
		}
	}
	if server, nodes := versions(t, l); server != "v1.37.1" || strings.Count(nodes, " Ready ") != 3 || strings.Count(nodes, "v1.37.1") != 3 {
		errorf(t, "after the upgrade every node is Ready on v1.37.1: API server %s, nodes:\n%s", server, nodes)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", etcdctlCmd+"endpoint health --cluster; "+etcdctlCmd+"endpoint status --cluster -w table")
	if strings.Count(r.stdout, "is healthy") != 3 || strings.Count(r.stdout, "3.7.0") < 3 {
		errorf(t, "3 healthy etcd members on v3.7.0 after the upgrade:\n%s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "upgrade", "apply")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "re-running the finished upgrade changed something: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// checkImagesBeforeSwitch checks in a run's JSON events that image was imported on every host before the
// first service switched to its new version.
func checkImagesBeforeSwitch(t *testing.T, ndjson, image string, hosts ...string) {
	t.Helper()
	imported := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(ndjson), "\n") {
		var e struct{ Status, Phase, Host, Message string }
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		if e.Phase == "images" && e.Message == "imported "+image {
			imported[e.Host] = true
		}
		if strings.HasPrefix(e.Phase, "control-plane") && e.Status == "changed" {
			break
		}
	}
	for _, h := range hosts {
		if !imported[h] {
			errorf(t, "%s was not imported on %s before the first service switched", image, h)
		}
	}
}

// checkPlanFromOlder plans the upgrade from the versions the hosts run: cluster.yaml says v1.37.1.
func checkPlanFromOlder(t *testing.T, l *lab.Lab) {
	t.Helper()
	r := run(t, l, "upgrade", "plan")
	if r.code != 0 || !strings.Contains(r.stdout, "upgrade v1.36.3 -> v1.37.1") || !strings.Contains(r.stdout, "order: h1; then h2; then h3") ||
		!strings.Contains(r.stdout, "h1           control-plane,etcd       kube-apiserver           v1.36.3    v1.37.1") ||
		!strings.Contains(r.stdout, "h2           worker                   kubelet                  v1.36.3    v1.37.1") || strings.Contains(r.stdout, "refused") {
		errorf(t, "upgrade plan from v1.36.3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "upgrade", "plan", "-o", "json")
	var plan struct {
		From, To string
		Batches  [][]string
		Hosts    []struct {
			Host    string
			Changes []struct{ Component, From, To string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || plan.From != "v1.36.3" || plan.To != "v1.37.1" ||
		!slices.EqualFunc(plan.Batches, [][]string{{"h1"}, {"h2"}, {"h3"}}, slices.Equal) || len(plan.Hosts) != 3 || len(plan.Hosts[1].Changes) != 2 {
		errorf(t, "upgrade plan -o json: %v\n%s", err, r.stdout)
	}
}

// webApp is three replicas of the test image's HTTP server behind NodePort 30080, at most one of them
// disrupted at a time. Each pod leaves the Service's endpoints before it stops (preStop), as a well-behaved
// app does.
const webApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: registry.local/privcloud/test:1
        imagePullPolicy: Never
        command: [/bin/probe, serve]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        lifecycle: {preStop: {exec: {command: [/bin/sleep, "3"]}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
`

// serviceClient requests a NodePort on each node in turn, a new connection each time (as many clients
// behind a load balancer would), and records every outage: the time from a failed request to the next
// answered one on the same node.
type serviceClient struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu            sync.Mutex
	ok, failed    int
	firstFailure  map[string]time.Time
	longestOutage time.Duration
	longestAt     string
	lastErr       string
	failures      []string // each failed request: when, through which node, why
}

type clientStats struct {
	ok, failed    int
	longestOutage time.Duration
	at, lastErr   string
	failures      []string
}

func (s clientStats) String() string {
	return fmt.Sprintf("%d requests answered, %d failed, longest outage %s (%s; last error: %s)",
		s.ok, s.failed, s.longestOutage.Round(10*time.Millisecond), s.at, s.lastErr)
}

func startServiceClient(t *testing.T, port int, hosts ...string) *serviceClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &serviceClient{cancel: cancel, done: make(chan struct{}), firstFailure: map[string]time.Time{}}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(c.done)
		for i := 0; ctx.Err() == nil; i++ {
			host := hosts[i%len(hosts)]
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/", host, port), nil)
			at := time.Now()
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if ctx.Err() != nil {
				return
			}
			c.record(host, at, err)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return c
}

func (c *serviceClient) record(host string, at time.Time, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first, failing := c.firstFailure[host]
	if err != nil {
		c.failed++
		c.lastErr = host + ": " + err.Error()
		c.failures = append(c.failures, at.Format("15:04:05.000")+" "+c.lastErr)
		if !failing {
			c.firstFailure[host] = at
		}
		return
	}
	c.ok++
	if failing {
		if d := at.Sub(first); d > c.longestOutage {
			c.longestOutage, c.longestAt = d, fmt.Sprintf("through %s at %s", host, first.Format("15:04:05.000"))
		}
		delete(c.firstFailure, host)
	}
}

// waitServing waits until every node answers.
func (c *serviceClient) waitServing(limit time.Duration) error {
	return wait.Poll(context.Background(), limit, 200*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.firstFailure) == 0 && c.ok > 0 {
			return nil
		}
		return fmt.Errorf("%d nodes failing, %d answered; last error %s", len(c.firstFailure), c.ok, c.lastErr)
	})
}

// reset forgets what the client saw so far.
func (c *serviceClient) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ok, c.failed, c.longestOutage, c.longestAt, c.lastErr, c.failures = 0, 0, 0, "", "", nil
	clear(c.firstFailure)
}

// stop ends the client and returns what it saw; an outage still going on counts up to now.
func (c *serviceClient) stop() clientStats {
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	for host, first := range c.firstFailure {
		if d := time.Since(first); d > c.longestOutage {
			c.longestOutage, c.longestAt = d, "through "+host+", still out at the end"
		}
	}
	return clientStats{ok: c.ok, failed: c.failed, longestOutage: c.longestOutage, at: c.longestAt, lastErr: c.lastErr, failures: c.failures}
}
