package phases

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/metricsproxy"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

const metricsConfigPath = "/etc/kubernetes/metrics.yaml"

// metricsEndpoint runs every host's metrics endpoint while the monitoring add-on is on (Prometheus reaches the
// components bound to the loopback through it) and takes it away when it is turned off.
func metricsEndpoint() workflow.Phase {
	return workflow.Phase{Name: "metrics", Short: "Run every host's metrics endpoint for the monitoring add-on (or remove it when the add-on is off)",
		RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
			if !r.Cluster.Spec.Addons.Monitoring.Enabled {
				return removeMetricsEndpoint(ctx, r, t)
			}
			if err := requireBinary(ctx, r, t, pki.MetricsUnit, "set spec.addons.monitoring.enabled: false"); err != nil {
				return err
			}
			d := templates.Metrics{Name: t.Spec.Name, Listen: addons.MetricsAddress(t.Spec)}
			return ensureRolled(ctx, r, t, pki.MetricsUnit,
				hostops.File{Path: "/etc/systemd/system/" + pki.MetricsUnit + ".service", Content: render("privcloud-metrics.service", d), Mode: 0o600},
				hostops.File{Path: metricsConfigPath, Content: MetricsConfig(&r.Cluster.Spec, t.Spec), Mode: 0o644})
		}}
}

// metricsOnHosts fails when a host lacks its metrics endpoint, which the metrics phase of init and join runs:
// Prometheus would start with every target behind it down.
func metricsOnHosts(ctx context.Context, r *workflow.Run) error {
	return requireOnHosts(ctx, r, r.TargetsFor(nil), metricsConfigPath, "monitoring", "hosts lack its metrics endpoint")
}

// MetricsConfig is host h's metrics endpoint configuration.
func MetricsConfig(s *api.ClusterSpec, h api.Host) []byte {
	c := metricsproxy.Config{Listen: addons.MetricsAddress(h), Clients: []string{pki.PrometheusUser}, Routes: addons.MetricsRoutes(s, h),
		CertificateDirs: []string{pki.RemotePKIDir}}
	out, err := yaml.Marshal(c)
	if err != nil {
		panic(err) // a plain struct of strings always marshals
	}
	return append([]byte("# Written by privcloud. The metrics endpoint of "+h.Name+" (privcloud-metrics.service).\n"), out...)
}

// removeMetricsEndpoint stops and removes the endpoint of a cluster whose monitoring was turned off, then its
// certificate from the state directory. A host whose certificate the state directory does not hold never ran
// one from it: nothing is asked of it, so a cluster without monitoring pays no command for this.
func removeMetricsEndpoint(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	store := PKIStore(r.Cluster)
	name := pki.MetricsCert(t.Spec.Name)
	const off = "spec.addons.monitoring.enabled is false"
	if _, err := os.Stat(store.CertPath(name)); errors.Is(err, fs.ErrNotExist) {
		return workflow.Skip(off)
	}
	unit := "/etc/systemd/system/" + pki.MetricsUnit + ".service"
	present, err := hostHas(ctx, t.Host, fileTest(unit))
	if err != nil {
		return err
	}
	if present {
		err = runScript(ctx, r, t, "remove "+pki.MetricsUnit+" ("+off+")",
			`systemctl disable --now -q `+pki.MetricsUnit+` 2>/dev/null
rm -f `+unit+` `+metricsConfigPath+` `+pki.RemotePKIDir+`/metrics.crt `+pki.RemotePKIDir+`/metrics.key
systemctl daemon-reload
echo "removed `+pki.MetricsUnit+`"`)
	}
	if err != nil || r.DryRun {
		return err
	}
	for _, f := range []string{store.CertPath(name), store.KeyPath(name)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	r.Changed(t.Spec.Name, "removed "+name+" from the state directory")
	return nil
}
