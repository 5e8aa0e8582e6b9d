//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/pki"
)

// withMonitoring turns the monitoring add-on on in a lab cluster.yaml.
func withMonitoring(t *testing.T, config string) string {
	t.Helper()
	if !strings.Contains(config, "\n  addons:\n") {
		fatalf(t, "the lab's cluster.yaml has no addons section:\n%s", config)
	}
	return strings.Replace(config, "\n  addons:\n", "\n  addons:\n    monitoring: {enabled: true}\n", 1)
}

// monitoringComponents are the lab bundle's components the monitoring add-on needs.
var monitoringComponents = []string{"privcloud-metrics", "prometheus-operator-bin", "prometheus-operator", "prometheus-config-reloader-bin",
	"prometheus-config-reloader", "prometheus-bin", "prometheus", "alertmanager-bin", "alertmanager", "node-exporter-bin", "node-exporter",
	"kube-state-metrics-bin", "kube-state-metrics"}

// prometheus reads Prometheus's and Alertmanager's APIs through the first control plane's API server (its
// proxy to their pods: a pod on a node whose kubelet is stopped still runs, but the node controller takes it
// out of its Service), with the admin kubeconfig.
type prometheus struct {
	client *http.Client
	base   string // the API server's URL
}

func newPrometheus(t *testing.T, l *lab.Lab, c *api.Cluster) *prometheus {
	t.Helper()
	cert, ca, err := pki.Credentials(pki.Store{Dir: c.Spec.StateDir}.KubeconfigPath("admin"))
	if err != nil {
		fatal(t, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cp := c.Spec.HostsWithRole(api.RoleControlPlane)[0]
	return &prometheus{base: "https://" + cp.InternalAddress + ":6443",
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}}
}

// The pods of the add-on's Prometheus and Alertmanager, with their ports.
const (
	prometheusPod   = "prometheus-main-0:9090"
	alertmanagerPod = "alertmanager-main-0:9093"
)

// get decodes the JSON answer of pod's API at path into out.
func (p *prometheus) get(pod, path string, out any) error {
	resp, err := p.client.Get(p.base + "/api/v1/namespaces/" + addons.MonitoringNamespace + "/pods/" + pod + "/proxy" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %.300s", path, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}

type promTarget struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

func (p *prometheus) targets() ([]promTarget, error) {
	var r struct {
		Data struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	err := p.get(prometheusPod, "/api/v1/targets?state=active", &r)
	return r.Data.ActiveTargets, err
}

func (p *prometheus) query(q string) ([]map[string]string, error) {
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	err := p.get(prometheusPod, "/api/v1/query?query="+url.QueryEscape(q), &r)
	var out []map[string]string
	for _, s := range r.Data.Result {
		out = append(out, s.Metric)
	}
	return out, err
}

// expectedTargets are job/instance pairs: every host component of cluster.yaml, CoreDNS's replicas (by pod) and
// kube-state-metrics.
func expectedTargets(c *api.Cluster) (hostTargets []string, serviceJobs map[string]int) {
	for _, j := range addons.ScrapeJobs(&c.Spec) {
		for _, tg := range j.Targets {
			hostTargets = append(hostTargets, j.Name+"/"+tg.Instance)
		}
	}
	sort.Strings(hostTargets)
	return hostTargets, addons.ServiceJobs(&c.Spec)
}

// checkMonitoring: Prometheus reports every target up (each component on each host that runs it, CoreDNS and
// kube-state-metrics), a query returns node-exporter's series for each node, and each host's metrics endpoint
// answers Prometheus's certificate alone.
func checkMonitoring(t *testing.T, l *lab.Lab) *prometheus {
	t.Helper()
	c, err := api.Load(l.ClusterConfig())
	if err != nil {
		fatal(t, err)
	}
	p := newPrometheus(t, l, c)
	start := time.Now()
	n := p.waitForTargets(t, l, c)
	t.Logf("BENCH monitoring: all %d targets up %s after init", n, time.Since(start).Round(time.Second))

	// the add-on's images are in the bundle's listing and its SBOM
	bundleFile := filepath.Join(l.Dir, "privcloud-bundle.tar.zst")
	inspect := runPrivcloud(t, "bundle", "inspect", bundleFile)
	sbom, err := exec.Command("tar", "--zstd", "-xOf", bundleFile, bundle.SBOMName).Output()
	if err != nil {
		fatal(t, err)
	}
	var doc struct {
		Packages []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(sbom, &doc); err != nil {
		fatal(t, err)
	}
	for _, name := range addons.MonitoringImages {
		if !regexp.MustCompile(`(?m)^` + name + ` +v[0-9.]+ +image `).MatchString(inspect.stdout) {
			errorf(t, "bundle inspect does not list the image %s:\n%s", name, inspect.stdout)
		}
		if !slices.ContainsFunc(doc.Packages, func(p struct {
			Name string `json:"name"`
		}) bool {
			return p.Name == name
		}) {
			errorf(t, "the bundle's SBOM has no package %s", name)
		}
	}

	// a series for each node, from its node-exporter; the expiry of every host's certificates
	for q, hosts := range map[string][]api.Host{
		"node_uname_info": c.Spec.Hosts, "privcloud_certificate_expiry_timestamp_seconds": c.Spec.Hosts,
	} {
		series, err := p.query(q)
		if err != nil {
			errorf(t, "query %s: %v", q, err)
			continue
		}
		for _, h := range hosts {
			if h.IsNode() || q != "node_uname_info" {
				if !slices.ContainsFunc(series, func(m map[string]string) bool { return m["instance"] == h.Name }) {
					errorf(t, "query %s: no series of %s in %v", q, h.Name, series)
				}
			}
		}
	}

	// a host's metrics endpoint: Prometheus's certificate reads it, the admin's (same CA, another name) gets
	// 403, no certificate gets no connection
	h := c.Spec.Hosts[1]
	endpoint := "https://" + addons.MetricsAddress(h) + "/metrics/kube-proxy"
	store := pki.Store{Dir: c.Spec.StateDir}
	promCert, err := tls.LoadX509KeyPair(store.CertPath(pki.PrometheusClientCert), store.KeyPath(pki.PrometheusClientCert))
	if err != nil {
		fatal(t, err)
	}
	caPEM, err := os.ReadFile(store.CertPath(pki.ClusterCA))
	if err != nil {
		fatal(t, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	admin, _, err := pki.Credentials(store.KubeconfigPath("admin"))
	if err != nil {
		fatal(t, err)
	}
	for _, tc := range []struct {
		who  string
		cert []tls.Certificate
		want int
	}{{"Prometheus", []tls.Certificate{promCert}, 200}, {"the admin", []tls.Certificate{admin}, 403}, {"no certificate", nil, 0}} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: tc.cert}}}
		resp, err := c.Get(endpoint)
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		if code != tc.want {
			errorf(t, "%s with %s: %d (%v), want %d", endpoint, tc.who, code, err, tc.want)
		}
	}
	return p
}

// waitForTargets waits until Prometheus has every target of cluster.yaml up, and no other, and returns how
// many there are.
func (p *prometheus) waitForTargets(t *testing.T, l *lab.Lab, c *api.Cluster) int {
	t.Helper()
	want, serviceJobs := expectedTargets(c)
	var report string
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		targets, err := p.targets()
		if err != nil {
			report = err.Error()
			continue
		}
		var got, down []string
		perService := map[string]int{}
		for _, tg := range targets {
			job := tg.Labels["job"]
			if tg.Health != "up" {
				down = append(down, fmt.Sprintf("%s/%s %s: %s", job, tg.Labels["instance"], tg.Health, tg.LastError))
				continue
			}
			if _, ok := serviceJobs[job]; ok {
				perService[job]++
			} else {
				got = append(got, job+"/"+tg.Labels["instance"])
			}
		}
		sort.Strings(got)
		report = fmt.Sprintf("up: %v\nby service: %v (want %v)\nnot up: %v", got, perService, serviceJobs, down)
		if slices.Equal(got, want) && len(down) == 0 && fmt.Sprint(perService) == fmt.Sprint(serviceJobs) {
			total := len(want)
			for _, n := range serviceJobs {
				total += n
			}
			return total
		}
	}
	fatalf(t, "Prometheus's targets after 5 minutes, want every one of %v up:\n%s%s", want, report, monitoringLogs(t, l))
	return 0
}

// checkMonitoringAfterChanges: after hosts joined and left, restores, reconfiguration and the CA rotation,
// Prometheus scrapes every host of config again, with the credentials of the new CA.
func checkMonitoringAfterChanges(t *testing.T, l *lab.Lab, config string) {
	t.Helper()
	c := loadConfig(t, config)
	start := time.Now()
	n := newPrometheus(t, l, c).waitForTargets(t, l, c)
	t.Logf("BENCH monitoring: all %d targets up %s after the CA rotation", n, time.Since(start).Round(time.Second))
}

// waitForAlert waits until alert fires for job on instance in Prometheus and reaches Alertmanager.
func (p *prometheus) waitForAlert(t *testing.T, l *lab.Lab, alert, job, instance string) {
	t.Helper()
	start := time.Now()
	matches := func(labels map[string]string) bool {
		return labels["alertname"] == alert && labels["job"] == job && labels["instance"] == instance
	}
	var last string
	for deadline := time.Now().Add(6 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Second) {
		var firing struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		var received []struct {
			Labels map[string]string `json:"labels"`
		}
		err := p.get(prometheusPod, "/api/v1/alerts", &firing)
		if err == nil {
			err = p.get(alertmanagerPod, "/api/v2/alerts", &received)
		}
		if err != nil {
			last = err.Error()
			continue
		}
		inPrometheus := slices.ContainsFunc(firing.Data.Alerts, func(a struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		}) bool {
			return a.State == "firing" && matches(a.Labels)
		})
		inAlertmanager := slices.ContainsFunc(received, func(a struct {
			Labels map[string]string `json:"labels"`
		}) bool {
			return matches(a.Labels)
		})
		last = fmt.Sprintf("firing in Prometheus: %v, received by Alertmanager: %v; alerts %v", inPrometheus, inAlertmanager, firing.Data.Alerts)
		if inPrometheus && inAlertmanager {
			t.Logf("BENCH monitoring: %s for %s on %s fired and reached Alertmanager %s after the stop", alert, job, instance, time.Since(start).Round(time.Second))
			return
		}
	}
	errorf(t, "%s for %s on %s did not fire within 6 minutes: %s%s", alert, job, instance, last, monitoringLogs(t, l))
}

// monitoringLogs are the add-on's pods and logs, for a failure's report.
func monitoringLogs(t *testing.T, l *lab.Lab) string {
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get pods -A -o wide | grep -E 'monitoring|node-exporter'; "+
		kubectl+"-n monitoring get prometheus,alertmanager -o yaml | grep -A12 'conditions:'; "+
		kubectl+"-n monitoring logs deploy/prometheus-operator --tail=30; "+
		kubectl+"-n monitoring logs prometheus-main-0 -c prometheus --tail=30; journalctl -u privcloud-metrics --no-pager | tail -20")
	return "\n" + r.stdout + r.stderr
}
