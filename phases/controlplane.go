package phases

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

func etcd() workflow.Phase {
	return workflow.Phase{Name: "etcd", Short: "Run etcd with TLS peer and client authentication; wait for health", Roles: etcdMembers,
		RunHost: runEtcd}
}

// runEtcd runs the host's etcd member of a new cluster and waits until it reports healthy over TLS.
func runEtcd(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	spec := r.Cluster.Spec
	var peers []string
	for _, h := range spec.HostsWithRole(api.RoleEtcd) {
		peers = append(peers, fmt.Sprintf("%s=https://%s", h.Name, net.JoinHostPort(h.InternalAddress, "2380")))
	}
	var extra []string
	for k, v := range spec.Etcd.ExtraArgs {
		extra = append(extra, k+"="+v)
	}
	slices.Sort(extra) // a stable unit: map order must not restart etcd
	unit, err := templates.Render("etcd.service", templates.Etcd{Name: t.Spec.Name, IP: t.Spec.InternalAddress, DataDir: spec.Etcd.DataDir,
		InitialCluster: strings.Join(peers, ","), ClusterState: "new", Token: r.Cluster.Metadata.Name, ExtraArgs: extra})
	if err != nil {
		return err
	}
	if err := ensureService(ctx, r, t, "etcd", serviceFile{"/etc/systemd/system/etcd.service", unit, 0o644}); err != nil {
		return err
	}
	if r.DryRun {
		return nil
	}
	store := PKIStore(r.Cluster)
	cfg, err := clientTLS(store.CertPath(pki.EtcdCA), store.CertPath("etcd/healthcheck-client"), store.KeyPath("etcd/healthcheck-client"))
	if err != nil {
		return err
	}
	// a lone new member is healthy at once; members of a new 3-member cluster once a quorum has started
	return waitHealthy(ctx, t, "etcd", "127.0.0.1:2379", "/health", `"health":"true"`, cfg, 2*time.Minute)
}

func apiserver() workflow.Phase {
	return workflow.Phase{Name: "apiserver", Short: "Run kube-apiserver (secure port only, RBAC, admission plugins); wait for /readyz", Roles: controlPlane,
		RunHost: runAPIServer}
}

// runAPIServer runs kube-apiserver against every etcd member and waits for /readyz.
func runAPIServer(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	spec := r.Cluster.Spec
	var etcds []string
	for _, h := range spec.HostsWithRole(api.RoleEtcd) {
		etcds = append(etcds, "https://"+net.JoinHostPort(h.InternalAddress, "2379"))
	}
	unit, err := templates.Render("kube-apiserver.service", templates.APIServer{Version: spec.KubernetesVersion, IP: t.Spec.InternalAddress,
		EtcdServers: strings.Join(etcds, ","), ServiceCIDR: spec.Network.ServiceCIDR, DNSDomain: spec.Network.DNSDomain})
	if err != nil {
		return err
	}
	if err := ensureService(ctx, r, t, "kube-apiserver", serviceFile{"/etc/systemd/system/kube-apiserver.service", unit, 0o644}); err != nil {
		return err
	}
	if r.DryRun {
		return nil
	}
	store := PKIStore(r.Cluster)
	// any client certificate of the cluster CA may read /readyz (system:public-info-viewer)
	cfg, err := clientTLS(store.CertPath(pki.ClusterCA), store.CertPath("apiserver-kubelet-client"), store.KeyPath("apiserver-kubelet-client"))
	if err != nil {
		return err
	}
	return waitHealthy(ctx, t, "kube-apiserver", net.JoinHostPort("127.0.0.1", "6443"), "/readyz", "ok", cfg, 3*time.Minute)
}
