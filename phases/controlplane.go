package phases

import (
	"context"
	"net"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

func apiserver() workflow.Phase {
	return workflow.Phase{Name: "apiserver", Short: "Run kube-apiserver (secure port only, RBAC, admission plugins); wait for /readyz", Roles: controlPlane,
		RunHost: runAPIServer}
}

// runAPIServer runs kube-apiserver against its own etcd member (or, on a host without one, every member) and
// waits for /readyz.
func runAPIServer(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	files, err := apiServerFiles(r.Cluster.Spec, t.Spec, r.Cluster.Spec.KubernetesVersion)
	if err != nil {
		return err
	}
	if err := ensureRolled(ctx, r, t, "kube-apiserver", files...); err != nil {
		return err
	}
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	store := PKIStore(r.Cluster)
	// any client certificate of the cluster CA may read /readyz (system:public-info-viewer)
	cfg, err := hostops.ClientTLS(store.CertPath(pki.ClusterCA), store.CertPath("apiserver-kubelet-client"), store.KeyPath("apiserver-kubelet-client"))
	if err != nil {
		return err
	}
	return hostops.WaitHealthy(ctx, t.Host, "kube-apiserver", net.JoinHostPort("127.0.0.1", "6443"), "/readyz", "ok", cfg, 3*time.Minute)
}

// apiServerFiles are kube-apiserver's unit on h at version and the policies it reads: Pod Security
// admission's defaults and, with audit on, the audit policy. Both are root's alone, like the unit's secrets.
func apiServerFiles(spec api.ClusterSpec, h api.Host, version string) ([]hostops.File, error) {
	unit, err := apiServerUnit(spec, h, version)
	if err != nil {
		return nil, err
	}
	ps := spec.APIServer.PodSecurity
	admission, err := templates.Render("admission.yaml", templates.Admission{Enforce: ps.Enforce, Audit: ps.Audit, Warn: ps.Warn, ExemptNamespaces: ps.ExemptNamespaces})
	if err != nil {
		return nil, err
	}
	files := []hostops.File{
		{Path: "/etc/kubernetes/admission.yaml", Content: admission, Mode: 0o600},
		{Path: "/etc/systemd/system/kube-apiserver.service", Content: unit, Mode: 0o600},
	}
	if spec.APIServer.Audited() {
		policy, err := templates.Render("audit-policy.yaml", nil)
		if err != nil {
			return nil, err
		}
		files = append([]hostops.File{{Path: "/etc/kubernetes/audit-policy.yaml", Content: policy, Mode: 0o600}}, files...)
	}
	return files, nil
}

// apiServerUnit is kube-apiserver's unit on h at version.
func apiServerUnit(spec api.ClusterSpec, h api.Host, version string) ([]byte, error) {
	// a stacked control plane talks to its own etcd member, as kubeadm's do: members joining or leaving then
	// change no API server's flags, and so restart none
	etcds := []string{"https://127.0.0.1:2379"}
	if !h.HasRole(api.RoleEtcd) {
		etcds = nil
		for _, e := range spec.HostsWithRole(api.RoleEtcd) {
			etcds = append(etcds, "https://"+net.JoinHostPort(e.InternalAddress, "2379"))
		}
	}
	a := spec.APIServer
	return templates.Render("kube-apiserver.service", templates.APIServer{Version: version, IP: h.InternalAddress,
		EtcdServers: strings.Join(etcds, ","), ServiceCIDR: spec.Network.ServiceCIDR, DNSDomain: spec.Network.DNSDomain,
		CipherSuites: templates.CipherSuites, Audit: a.Audited(), AuditMaxAge: a.Audit.MaxAge, AuditMaxBackup: a.Audit.MaxBackup,
		AuditMaxSize: a.Audit.MaxSize, EncryptSecrets: a.SecretsEncrypted(), ExtraArgs: flagList(a.ExtraArgs)})
}

func controllerManager() workflow.Phase {
	return workflow.Phase{Name: "controller-manager", Short: "Run kube-controller-manager with leader election; wait until it holds its lease", Roles: controlPlane,
		RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
			return runLeaderElected(ctx, r, t, "kube-controller-manager", leaderElectedData(r, "kube-controller-manager", r.Cluster.Spec.KubernetesVersion))
		}}
}

func scheduler() workflow.Phase {
	return workflow.Phase{Name: "scheduler", Short: "Run kube-scheduler with leader election; wait until it holds its lease", Roles: controlPlane,
		RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
			return runLeaderElected(ctx, r, t, "kube-scheduler", leaderElectedData(r, "kube-scheduler", r.Cluster.Spec.KubernetesVersion))
		}}
}

// leaderElectedData is what the unit of kube-controller-manager or kube-scheduler at version is made of.
func leaderElectedData(r *workflow.Run, unit, version string) templates.ControllerManager {
	spec := r.Cluster.Spec
	if unit == "kube-scheduler" {
		return templates.ControllerManager{Version: version, ExtraArgs: flagList(spec.Scheduler.ExtraArgs)}
	}
	return templates.ControllerManager{Version: version, ClusterName: r.Cluster.Metadata.Name, PodCIDR: spec.Network.PodCIDR,
		ServiceCIDR: spec.Network.ServiceCIDR, NodeCIDRMaskSize: spec.Network.NodeCIDRMaskSize, ExtraArgs: flagList(spec.ControllerManager.ExtraArgs)}
}

// runLeaderElected runs a leader-elected component and waits until some instance holds its lease: with
// several control planes only one leads, and any leader proves the component works.
func runLeaderElected(ctx context.Context, r *workflow.Run, t *workflow.Target, unit string, data templates.ControllerManager) error {
	content, err := templates.Render(unit+".service", data)
	if err != nil {
		return err
	}
	if err := ensureRolled(ctx, r, t, unit, hostops.File{Path: "/etc/systemd/system/" + unit + ".service", Content: content, Mode: 0o600}); err != nil {
		return err
	}
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	api, err := apiVia(r, t.Host)
	if err != nil {
		return err
	}
	defer api.Close()
	_, err = api.WaitLease(ctx, unit, 2*time.Minute)
	return err
}

func clusterRBAC() workflow.Phase {
	return workflow.Phase{Name: "cluster-rbac", Short: "Bind the admin group to cluster-admin and the apiserver's kubelet client to kubelet-api-admin",
		Run: applyClusterRBAC}
}

// applyClusterRBAC creates the bindings kubeadm creates too: the admin kubeconfig's group gets cluster-admin
// (revocable, unlike system:masters), and the API server's kubelet client may use the kubelet API (exec, logs).
func applyClusterRBAC(ctx context.Context, r *workflow.Run) error {
	cps := r.TargetsFor(controlPlane)
	if !r.Wet(cps[0].Spec.Name, "apply ClusterRoleBindings privcloud:cluster-admins, privcloud:apiserver-kubelet-client, privcloud:node-client-renewal (and the roles of kube-router, flannel and Multus)") {
		return nil
	}
	api, err := apiVia(r, cps[0].Host)
	if err != nil {
		return err
	}
	defer api.Close()
	var objs []*unstructured.Unstructured
	for _, b := range []struct{ name, role, kind, subject string }{
		{"privcloud:cluster-admins", "cluster-admin", "Group", pki.AdminGroup},
		{"privcloud:apiserver-kubelet-client", "system:kubelet-api-admin", "User", "kube-apiserver-kubelet-client"},
		// kubelets renew their client certificates themselves (rotateCertificates); the controller-manager
		// approves a node's request for its own name
		{"privcloud:node-client-renewal", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"},
	} {
		objs = append(objs, object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", b.name, map[string]any{
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": b.role},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": b.kind, "name": b.subject}},
		}))
	}
	if r.Cluster.Spec.Network.PolicyEnforced() {
		objs = append(objs, kubeRouterRBAC()...)
	}
	if r.Cluster.Spec.Network.Flannel() {
		objs = append(objs, flannelRBAC()...)
	}
	if r.Cluster.Spec.Addons.Multus.On() {
		objs = append(objs, multusRBAC()...)
	}
	return applyObjects(ctx, r, api, objs...)
}

// multusRBAC lets Multus's CNI plugin on every node do what it does for each pod: read the pod (its network
// annotations) and the NetworkAttachmentDefinitions they name, record the pod's interfaces in its status and
// report a network it cannot find as an event. It is bound before any node runs a pod through the plugin.
func multusRBAC() []*unstructured.Unstructured {
	return userRole("privcloud:multus", pki.MultusUser,
		map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get"}},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"pods/status"}, "verbs": []any{"get", "update"}},
		map[string]any{"apiGroups": []any{"k8s.cni.cncf.io"}, "resources": []any{"network-attachment-definitions"}, "verbs": []any{"get"}},
		map[string]any{"apiGroups": []any{"", "events.k8s.io"}, "resources": []any{"events"}, "verbs": []any{"create", "patch", "update"}})
}

// flannelRBAC lets every node's flanneld read the nodes (their pod CIDRs and overlay endpoints) and annotate
// its own with its VXLAN endpoint, as upstream's DaemonSet role does; it needs nothing else.
func flannelRBAC() []*unstructured.Unstructured {
	return userRole("privcloud:flannel", pki.FlannelUser,
		map[string]any{"apiGroups": []any{""}, "resources": []any{"nodes"}, "verbs": []any{"get", "list", "watch"}},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"nodes/status"}, "verbs": []any{"patch"}})
}

// userRole is a ClusterRole of rules and its binding to user, one of privcloud's node-wide identities.
func userRole(name, user string, rules ...any) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		object("rbac.authorization.k8s.io/v1", "ClusterRole", name, map[string]any{"rules": rules}),
		object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", name, map[string]any{
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
		}),
	}
}

// kubeRouterRBAC lets the NetworkPolicy firewall of every node read what policies select and no more
// (kube-router's firewall controller waits for these informers to sync).
func kubeRouterRBAC() []*unstructured.Unstructured {
	read := []any{"get", "list", "watch"}
	return userRole("privcloud:kube-router", pki.KubeRouterUser,
		map[string]any{"apiGroups": []any{""}, "resources": []any{"pods", "namespaces", "nodes", "services", "endpoints"}, "verbs": read},
		map[string]any{"apiGroups": []any{"networking.k8s.io"}, "resources": []any{"networkpolicies"}, "verbs": read},
		map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": read},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"events"}, "verbs": []any{"create", "patch"}})
}
