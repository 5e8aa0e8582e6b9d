package addons

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/metricsproxy"
)

// MonitoringImages are the bundle components the monitoring add-on runs.
var MonitoringImages = []string{"prometheus-operator", "prometheus-config-reloader", "prometheus", "alertmanager", "node-exporter", "kube-state-metrics"}

// MonitoringNamespace holds Prometheus, Alertmanager, the operator and kube-state-metrics; node-exporter, a
// host agent like kube-proxy, runs in kube-system.
const MonitoringNamespace = "monitoring"

// The operator's CRDs, as its binary prints them (prometheus-operator crds; make monitoring-crds writes the
// file again from the bundle's operator), gzipped: 4.5 MB of schema.
//
//go:embed crds/prometheus-operator.yaml.gz
var operatorCRDs []byte

// OperatorCRDs are the Prometheus Operator's CustomResourceDefinitions.
func OperatorCRDs() ([]*unstructured.Unstructured, error) {
	zr, err := gzip.NewReader(bytes.NewReader(operatorCRDs))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	return kube.Decode("prometheus-operator CRDs", data)
}

// MonitoringSecret holds Prometheus's client certificate and the CA that verifies its targets.
const MonitoringSecret = "prometheus-scrape-tls"

// MonitoringState is what the monitoring add-on takes from privcloud's PKI: Prometheus's client certificate and
// the cluster CA that verifies the API servers, kubelets and metrics endpoints it scrapes.
type MonitoringState struct {
	CACert, ClientCert, ClientKey []byte
}

// Where each component of a host serves its metrics on the loopback; each host's metrics endpoint
// (privcloud-metrics) relays them at https://HOST:10290/metrics/NAME.
const (
	EtcdMetricsURL              = "http://127.0.0.1:2381/metrics"
	ControllerManagerMetricsURL = "https://127.0.0.1:10257/metrics"
	SchedulerMetricsURL         = "https://127.0.0.1:10259/metrics"
	KubeProxyMetricsURL         = "http://127.0.0.1:10249/metrics"
	NodeExporterMetricsURL      = "http://127.0.0.1:9100/metrics"
)

// MetricsRoutes are the components host h runs, by the job name Prometheus scrapes them under, and where each
// serves its metrics on the loopback.
func MetricsRoutes(s *api.ClusterSpec, h api.Host) map[string]string {
	routes := map[string]string{}
	if h.HasRole(api.RoleEtcd) {
		routes["etcd"] = EtcdMetricsURL
	}
	if h.HasRole(api.RoleControlPlane) {
		routes["kube-controller-manager"] = ControllerManagerMetricsURL
		routes["kube-scheduler"] = SchedulerMetricsURL
	}
	if h.IsNode() {
		routes["kube-proxy"] = KubeProxyMetricsURL
		routes["node-exporter"] = NodeExporterMetricsURL
		if s.APILoadBalancer.On() {
			routes["api-lb"] = "http://" + s.APILoadBalancer.HealthAddress() + "/metrics"
		}
	}
	return routes
}

// MetricsAddress is where host h's metrics endpoint listens: its internal address, the metrics port.
func MetricsAddress(h api.Host) string {
	return net.JoinHostPort(h.InternalAddress, strconv.Itoa(api.DefaultMetricsPort))
}

// ScrapeJob is one job of Prometheus: a component, where on each host it is read, and which hosts run it.
type ScrapeJob struct {
	Name    string
	Path    string
	Targets []ScrapeTarget
}

// ScrapeTarget is one host's address for a job; Instance (the host's name) labels its series.
type ScrapeTarget struct {
	Address, Instance string
}

// ScrapeJobs are every job the monitoring add-on gives Prometheus for the hosts of cluster.yaml: the API
// servers and kubelets directly, everything else through each host's metrics endpoint. The e2e suite expects
// exactly these targets up.
func ScrapeJobs(s *api.ClusterSpec) []ScrapeJob {
	jobs := map[string]*ScrapeJob{}
	add := func(name, path, addr, host string) {
		j := jobs[name]
		if j == nil {
			j = &ScrapeJob{Name: name, Path: path}
			jobs[name] = j
		}
		j.Targets = append(j.Targets, ScrapeTarget{Address: addr, Instance: host})
	}
	for _, h := range s.Hosts {
		if h.HasRole(api.RoleControlPlane) {
			add("apiserver", "/metrics", net.JoinHostPort(h.InternalAddress, strconv.Itoa(api.DefaultAPIServerPort)), h.Name)
		}
		if h.IsNode() {
			kubelet := net.JoinHostPort(h.InternalAddress, "10250")
			add("kubelet", "/metrics", kubelet, h.Name)
			add("cadvisor", "/metrics/cadvisor", kubelet, h.Name)
		}
		routes := MetricsRoutes(s, h)
		names := []string{metricsproxy.CertificatesRoute}
		for name := range routes {
			names = append(names, name)
		}
		for _, name := range names {
			add(name, "/metrics/"+name, MetricsAddress(h), h.Name)
		}
	}
	var out []ScrapeJob
	for _, j := range jobs {
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// ServiceJobs are the jobs Prometheus finds through Services (ServiceMonitors), with how many targets each has.
func ServiceJobs(s *api.ClusterSpec) map[string]int {
	out := map[string]int{"kube-state-metrics": 1}
	if s.Addons.CoreDNS.Enabled != nil && *s.Addons.CoreDNS.Enabled {
		out["coredns"] = s.Addons.CoreDNS.Replicas
	}
	return out
}

func monitoringData(in *Inputs) (any, error) {
	if in.Monitoring == nil {
		return nil, fmt.Errorf("add-on monitoring: no state given")
	}
	images := map[string]string{}
	for _, name := range MonitoringImages {
		ref, err := in.image(name)
		if err != nil {
			return nil, err
		}
		images[name] = ref
	}
	m := in.Cluster.Spec.Addons.Monitoring
	return map[string]any{"Images": images, "Namespace": MonitoringNamespace, "Retention": m.Retention,
		"StorageClass": m.StorageClass, "StorageSize": m.StorageSize, "PrometheusVersion": in.Versions["prometheus"],
		"Jobs": ScrapeJobs(&in.Cluster.Spec), "CoreDNS": ServiceJobs(&in.Cluster.Spec)["coredns"] > 0,
		"CA": in.Monitoring.CACert, "Cert": in.Monitoring.ClientCert, "Key": in.Monitoring.ClientKey}, nil
}
