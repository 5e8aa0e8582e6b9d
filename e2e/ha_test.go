//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/privcloud/privcloud/apilb"
	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// probe asks something every interval until stopped and keeps each answer's time and error: a client of the
// cluster that counts its failed requests.
type probe struct {
	name    string
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once

	mu      sync.Mutex
	results []probeResult
}

type probeResult struct {
	at  time.Time
	err error
}

func startProbe(name string, every time.Duration, try func(context.Context) error) *probe {
	p := &probe{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			err := try(ctx)
			cancel()
			p.mu.Lock()
			p.results = append(p.results, probeResult{at: start, err: err})
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return p
}

// end stops the probe and waits for its last request; ending it again does nothing, so a deferred end may
// follow an explicit one.
func (p *probe) end() {
	p.stopped.Do(func() { close(p.stop) })
	<-p.done
}

// between counts the requests started in [from, to) and returns the failed ones.
func (p *probe) between(from, to time.Time) (total int, failed []probeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.results {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		total++
		if r.err != nil {
			failed = append(failed, r)
		}
	}
	return total, failed
}

// firstOKAfter is the start of the first request after t that succeeded.
func (p *probe) firstOKAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.results {
		if r.at.After(t) && r.err == nil {
			return r.at, true
		}
	}
	return time.Time{}, false
}

func describe(failed []probeResult, since time.Time) string {
	var b strings.Builder
	for _, f := range failed {
		fmt.Fprintf(&b, "\n  +%s: %v", f.at.Sub(since).Round(10*time.Millisecond), f.err)
	}
	return b.String()
}

// through is an HTTP client whose every request opens a new connection from host (over its SSH connection) to
// the address asked for: each request is a new choice of the host's API load balancer.
func through(host *ssh.Client, cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		}}}
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// webBehindService creates a Deployment of two test pods named name behind a Service of the same name, from
// host with the cluster.yaml at config, and returns the Service's ClusterIP once the pods run.
func webBehindService(t *testing.T, config, host, name string) string {
	t.Helper()
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	r := runConfig(t, config, "exec", "--hosts", host, "--", "printf '%s' "+ssh.ShellQuote(fmt.Sprintf(gracefulWeb, name, name, name))+" | "+kubectl+"apply -f - && "+
		kubectl+"expose deployment "+name+" --port=8080 && "+kubectl+"rollout status deployment/"+name+" --timeout=120s && "+
		kubectl+"get service "+name+" -o jsonpath='{.spec.clusterIP}{\"\\n\"}'")
	clusterIP := lastIP(r.stdout)
	if r.code != 0 || clusterIP == "" {
		fatalf(t, "a Deployment behind a Service: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return clusterIP
}

// gracefulWeb is a Deployment (named by %s three times) of two test pods that behave as a Service's clients
// expect when pods are replaced (a rollout restart after a CA rotation): a pod receives requests once it
// listens, and leaves the Service's endpoints before it stops listening.
const gracefulWeb = `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": %q},
 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": %q}},
  "template": {"metadata": {"labels": {"app": %q}},
   "spec": {"containers": [{"name": "test", "image": "registry.local/privcloud/test:1", "command": ["/bin/probe", "serve"],
    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}]}}}}`

// serviceProbe requests the Service at clusterIP:8080 from a host, every interval.
// It starts once the Service has answered three times in a row: a Deployment just rolled out may not be in
// that host's kube-proxy rules yet, and the probe counts what the cluster does after that.
func serviceProbe(host *ssh.Client, clusterIP string, every time.Duration) *probe {
	client := through(host, nil)
	url := "http://" + net.JoinHostPort(clusterIP, "8080") + "/"
	deadline := time.Now().Add(time.Minute)
	for answered := 0; answered < 3 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if get(ctx, client, url) == nil {
			answered++
		} else {
			answered = 0
		}
		cancel()
	}
	return startProbe("Service from "+host.Name(), every, func(ctx context.Context) error {
		return get(ctx, client, url)
	})
}

// adminTLS is the TLS configuration of the state directory's admin kubeconfig.
func adminTLS(t *testing.T, l *lab.Lab) *tls.Config {
	t.Helper()
	c, err := l.Cluster()
	if err != nil {
		fatal(t, err)
	}
	cert, ca, err := pki.Credentials(pki.Store{Dir: c.Spec.StateDir}.KubeconfigPath("admin"))
	if err != nil {
		fatal(t, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// apiProbe reads the default namespace (a quorum read: etcd answers too) every 200 ms from a worker through its
// API load balancer, as that worker's kubelet reaches the API.
func apiProbe(t *testing.T, l *lab.Lab, worker *ssh.Client) *probe {
	c := through(worker, adminTLS(t, l))
	return startProbe("API from a worker", 200*time.Millisecond, func(ctx context.Context) error {
		return get(ctx, c, "https://127.0.0.1:6444/api/v1/namespaces/default")
	})
}

// lbBackends is the worker's load balancer's view of the API servers.
func lbBackends(ctx context.Context, worker *ssh.Client) ([]apilb.Status, error) {
	c := through(worker, nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:6445/backends", nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st []apilb.Status
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// watchNodesReady polls the nodes named through the API server at 127.0.0.1:6443 of a control plane and
// returns every time one of them was seen not Ready.
func watchNodesReady(t *testing.T, l *lab.Lab, cp *ssh.Client, names []string, stop <-chan struct{}) <-chan []string {
	c, err := l.Cluster()
	if err != nil {
		fatal(t, err)
	}
	client, err := kube.New(pki.Store{Dir: c.Spec.StateDir}.KubeconfigPath("admin"), "127.0.0.1:6443", cp.Dial)
	if err != nil {
		fatal(t, err)
	}
	out := make(chan []string, 1)
	go func() {
		defer client.Close()
		var seen []string
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			list, err := client.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			cancel()
			if err != nil {
				seen = append(seen, "list: "+err.Error())
			}
			if list != nil {
				for _, n := range list.Items {
					if strings.Contains(" "+strings.Join(names, " ")+" ", " "+n.Name+" ") && !kube.NodeReady(&n) {
						seen = append(seen, time.Now().Format("15:04:05.000")+" "+n.Name+" not Ready")
					}
				}
			}
			select {
			case <-stop:
				out <- seen
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return out
}

// checkControlPlaneLoss is the cluster of three control planes (h1, h4, h5, stacked etcd) and two workers
// losing its first control plane to a power cut while a worker reads the API through its load balancer and
// requests a Service: the nodes stay Ready, new work is scheduled, the operator's kubeconfig reaches another
// control plane, and when the host comes back the cluster is whole again with no manual step. Then two etcd
// members stop: the lost quorum is reported naming them, and the cluster heals when they return.
func checkControlPlaneLoss(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	ctx := context.Background()
	local := kubectl + "--server https://127.0.0.1:6443 " // on h4, whose API server stays
	r := run(t, l, "exec", "--hosts", "h4", "--", local+"create deployment web --image=registry.local/privcloud/test:1 --replicas=2 -- /bin/probe serve && "+
		local+"expose deployment web --port=8080 && "+local+"rollout status deployment/web --timeout=120s && "+
		local+"get service web -o jsonpath='{.spec.clusterIP}{\"\\n\"}'")
	clusterIP := lastIP(r.stdout)
	if r.code != 0 || clusterIP == "" {
		fatalf(t, "a Deployment behind a Service: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	serviceURL := "http://" + net.JoinHostPort(clusterIP, "8080") + "/"

	worker, err := l.Connect(ctx, "h2")
	if err != nil {
		fatal(t, err)
	}
	defer worker.Close()
	cp, err := l.Connect(ctx, "h4")
	if err != nil {
		fatal(t, err)
	}
	defer cp.Close()
	api := apiProbe(t, l, worker)
	defer api.end()
	svcClient := through(worker, nil)
	svc := startProbe("Service from a worker", 200*time.Millisecond, func(ctx context.Context) error { return get(ctx, svcClient, serviceURL) })
	defer svc.end()
	waitFor(t, "both clients answered 10 times", 60*time.Second, func() bool {
		n1, f1 := api.between(time.Time{}, time.Now())
		n2, f2 := svc.between(time.Time{}, time.Now())
		return n1-len(f1) >= 10 && n2-len(f2) >= 10
	})

	stopWatch := make(chan struct{})
	notReady := watchNodesReady(t, l, cp, []string{"h2", "h3", "h4", "h5"}, stopWatch)
	killed := time.Now()
	if err := l.Kill(1); err != nil {
		fatal(t, err)
	}
	t.Logf("h1 killed (power cut) at %s", killed.Format("15:04:05.000"))

	// the worker's load balancer marks h1 down
	var downAt time.Time
	waitFor(t, "h2's load balancer marks h1 down", 60*time.Second, func() bool {
		st, err := lbBackends(ctx, worker)
		if err != nil {
			return false
		}
		for _, b := range st {
			if strings.HasPrefix(b.Address, lab.HostIP(1)+":") && !b.Healthy && b.Since.After(killed) {
				downAt = b.Since
				return true
			}
		}
		return false
	})
	t.Logf("h2's load balancer marked h1 down %s after the kill", downAt.Sub(killed).Round(10*time.Millisecond))

	// new work is scheduled and runs; a write in the second etcd takes to elect a new leader (h1 led) times out,
	// and is tried again as a user would
	waitFor(t, "a new Deployment created with h1 gone", 60*time.Second, func() bool {
		r := run(t, l, "exec", "--hosts", "h4", "--", local+"get deployment after-loss >/dev/null 2>&1 || "+
			local+"create deployment after-loss --image=registry.local/privcloud/test:1 --replicas=2 -- /bin/probe serve")
		return r.code == 0
	})
	r = run(t, l, "exec", "--hosts", "h4", "--", local+"rollout status deployment/after-loss --timeout=120s")
	scheduled := time.Since(killed)
	if r.code != 0 {
		errorf(t, "a new Deployment with h1 gone: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("a new Deployment's 2 pods ran %s after the kill", scheduled.Round(100*time.Millisecond))

	// the operator's kubeconfig: a context per control plane, and privcloud kubeconfig picks one that answers
	kubeconfig := filepath.Join(l.Dir, "kubeconfig")
	if err := listNodes(kubeconfig, "kubernetes-admin@lab-h4"); err != nil {
		errorf(t, "the written kubeconfig's context for h4: %v", err)
	}
	fresh := filepath.Join(l.Dir, "kubeconfig-after-loss")
	r = run(t, l, "kubeconfig", "--out", fresh)
	if r.code != 0 || !strings.Contains(r.stderr, "the current context is h4's") {
		errorf(t, "privcloud kubeconfig with h1 gone: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	} else if err := listNodes(fresh, ""); err != nil {
		errorf(t, "the kubeconfig privcloud wrote with h1 gone: %v", err)
	}
	r = run(t, l, "preflight")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "h1: unreachable") {
		errorf(t, "preflight with h1 gone names it: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkStatusWithAHostGone(t, l, "h1")
	// the node controller's grace period is 50 s: watch until well past it
	if wait := time.Until(killed.Add(60 * time.Second)); wait > 0 {
		time.Sleep(wait) // a window to observe, not a condition to wait for
	}
	close(stopWatch)
	if seen := <-notReady; len(seen) > 0 {
		errorf(t, "nodes were not Ready after h1 was lost: %v", seen)
	}
	lossEnd := time.Now()

	// h1 comes back on its own
	if err := l.Start(1); err != nil {
		fatal(t, err)
	}
	back := time.Now()
	waitFor(t, "h1's services, etcd of 3 healthy members and h1 in every load balancer", 5*time.Minute, func() bool {
		r := run(t, l, "exec", "--hosts", "h4", "--", etcdctlCmd+"endpoint health --cluster && "+local+"get nodes h1 --no-headers")
		if r.code != 0 || strings.Count(r.stdout, "is healthy") != 3 || !strings.Contains(r.stdout, " Ready ") {
			return false
		}
		st, err := lbBackends(ctx, worker)
		if err != nil {
			return false
		}
		for _, b := range st {
			if !b.Healthy {
				return false
			}
		}
		return true
	})
	t.Logf("h1 whole again %s after it booted", time.Since(back).Round(100*time.Millisecond))
	healed := time.Now()

	apiTotal, apiFailed := api.between(killed, healed)
	svcTotal, svcFailed := svc.between(killed, lossEnd)
	lateTotal, late := api.between(downAt.Add(time.Second), healed)
	t.Logf("BENCH control-plane loss: lb-down=%s new-deployment=%s api-requests=%d api-failed=%d api-failed-after-lb-down=%d/%d service-requests=%d service-failed=%d",
		downAt.Sub(killed).Round(10*time.Millisecond), scheduled.Round(100*time.Millisecond), apiTotal, len(apiFailed), len(late), lateTotal, svcTotal, len(svcFailed))
	if ok, found := api.firstOKAfter(killed); found {
		t.Logf("BENCH first successful API request from a worker started %s after the kill", ok.Sub(killed).Round(10*time.Millisecond))
	}
	if len(apiFailed) > 0 {
		first := apiFailed[0].at
		if ok, found := api.firstOKAfter(first); found {
			t.Logf("BENCH first API failure +%s, first success after it +%s", first.Sub(killed).Round(10*time.Millisecond), ok.Sub(killed).Round(10*time.Millisecond))
		}
		t.Logf("API failures:%s", describe(apiFailed, killed))
	}
	// none is the goal, measured above (BENCHMARKS.md); a balancer that kept sending to the lost host would
	// fail one request in three, which is what this catches without failing on a loaded machine's stray one
	if len(late) > 0 {
		t.Logf("API requests that failed after the load balancer marked h1 down:%s", describe(late, killed))
	}
	if len(late)*20 > lateTotal {
		errorf(t, "%d of %d API requests failed after the load balancer marked h1 down", len(late), lateTotal)
	}
	if len(svcFailed) > 0 {
		t.Logf("Service requests that failed while h1 was gone:%s", describe(svcFailed, killed))
	}
	if len(svcFailed)*20 > svcTotal {
		errorf(t, "%d of %d Service requests failed while h1 was gone", len(svcFailed), svcTotal)
	}

	// two of three etcd members stop: the quorum is lost and said so, naming them; they return and it heals
	r = run(t, l, "exec", "--hosts", "h4,h5", "--", "systemctl stop etcd")
	if r.code != 0 {
		fatalf(t, "stop etcd on h4, h5: %s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "preflight")
	out := r.stdout + r.stderr
	if r.code == 0 || !strings.Contains(out, "etcd has lost quorum") || !strings.Contains(out, "h4: not running (inactive)") ||
		!strings.Contains(out, "h5: not running (inactive)") {
		errorf(t, "preflight with 2 of 3 etcd members down: exit %d\n%s", r.code, out)
	} else {
		t.Logf("preflight with 2 of 3 etcd members down: exit %d\n%s", r.code, out)
	}
	start := time.Now()
	r = run(t, l, "status")
	out = r.stdout + r.stderr
	if r.code == 0 || !strings.Contains(out, "etcd has lost quorum") || !strings.Contains(out, "h4") || !strings.Contains(out, "h5") {
		errorf(t, "status with 2 of 3 etcd members down: exit %d\n%s", r.code, out)
	} else {
		t.Logf("status with 2 of 3 etcd members down (%s): exit %d\n%s", time.Since(start).Round(10*time.Millisecond), r.code, out)
	}
	r = run(t, l, "exec", "--hosts", "h4,h5", "--", "systemctl start etcd")
	if r.code != 0 {
		fatalf(t, "start etcd on h4, h5: %s%s", r.stdout, r.stderr)
	}
	waitFor(t, "etcd of 3 healthy members again", 3*time.Minute, func() bool {
		r := run(t, l, "exec", "--hosts", "h1", "--", etcdctlCmd+"endpoint health --cluster")
		return r.code == 0 && strings.Count(r.stdout, "is healthy") == 3
	})
	waitFor(t, "preflight passes again", 3*time.Minute, func() bool { return run(t, l, "preflight").code == 0 })
	r = run(t, l, "exec", "--hosts", "h4", "--", local+"delete deployment after-loss web && "+local+"delete service web")
	if r.code != 0 {
		errorf(t, "clean up: %s%s", r.stdout, r.stderr)
	}
}

// listNodes lists the nodes with a kubeconfig from this machine, in kubeContext ("" for its current one).
func listNodes(kubeconfig, kubeContext string) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return err
	}
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	list, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	if n := readyCount(list.Items); n < 4 {
		return fmt.Errorf("%d Ready nodes, want at least 4", n)
	}
	return nil
}

func readyCount(nodes []corev1.Node) int {
	n := 0
	for i := range nodes {
		if kube.NodeReady(&nodes[i]) {
			n++
		}
	}
	return n
}

// waitFor polls cond every second until it holds or limit passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			fatalf(t, "timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(time.Second)
	}
}

// checkMembershipUnderLoad runs fn (control planes joining and leaving) while a worker reads the API through its
// load balancer and requests a Service, and fails on any failed request: membership changes reload the
// balancers, dropping nothing.
func checkMembershipUnderLoad(t *testing.T, l *lab.Lab, fn func()) {
	t.Helper()
	worker, err := l.Connect(context.Background(), "h2")
	if err != nil {
		fatal(t, err)
	}
	defer worker.Close()
	clusterIP := webBehindService(t, l.ClusterConfig(), "h1", "join-web")
	api := apiProbe(t, l, worker)
	svc := serviceProbe(worker, clusterIP, 200*time.Millisecond)
	start := time.Now()
	fn()
	api.end()
	svc.end()
	total, failed := api.between(start, time.Now())
	svcTotal, svcFailed := svc.between(start, time.Now())
	t.Logf("BENCH control planes joined and reset: api-requests=%d api-failed=%d service-requests=%d service-failed=%d", total, len(failed), svcTotal, len(svcFailed))
	if len(svcFailed) > 0 {
		errorf(t, "Service requests from a worker failed while control planes joined and left:%s", describe(svcFailed, start))
	}
	r := run(t, l, "exec", "--hosts", "h1", "--", "kubectl --kubeconfig /etc/kubernetes/admin.conf delete service,deployment join-web --wait=false")
	if r.code != 0 {
		errorf(t, "delete the join-web Service and Deployment: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if len(failed) > 0 {
		errorf(t, "API requests from a worker failed while control planes joined and left:%s", describe(failed, start))
	}
}
