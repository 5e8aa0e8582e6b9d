package phases

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// addonReadyLimit bounds the wait for an add-on's workloads to roll out.
const addonReadyLimit = 5 * time.Minute

// ErrImagesMissing marks an add-on that cannot run because the bundle lacks its images.
var ErrImagesMissing = errors.New("the bundle lacks the add-on's images")

// addonPhases is one phase per add-on: render, server-side apply through a control-plane host, wait until
// its workloads are rolled out and its Services have endpoints.
// AddonOptions are the operator's choices for applying add-ons.
type AddonOptions struct {
	// ServerDryRun has the API server check every object without storing it.
	ServerDryRun bool
}

func addonPhases(b *bundleState, o *AddonOptions) workflow.Phase {
	var ps []workflow.Phase
	for _, a := range addons.All() {
		ps = append(ps, addonPhase(b, a, a.Short, o))
	}
	return workflow.Phase{Name: "addons", Short: "Apply the add-ons with server-side apply and wait until they are ready", Phases: ps}
}

func addonPhase(b *bundleState, a addons.Addon, short string, o *AddonOptions) workflow.Phase {
	return workflow.Phase{Name: a.Name, Short: short,
		Skip: func(r *workflow.Run) string { return a.Disabled(&r.Cluster.Spec) },
		Run: func(ctx context.Context, r *workflow.Run) error {
			// init and join set up the hosts' side of an add-on just before; 'addons apply' alone checks it
			if check := addonHooksFor(a.Name).checkHosts; check != nil && o != nil && !o.ServerDryRun {
				if err := check(ctx, r); err != nil {
					return err
				}
			}
			return applyAddon(ctx, r, b, a, o != nil && o.ServerDryRun)
		}}
}

// addonHooks is what privcloud does for an add-on besides rendering and applying its manifests.
type addonHooks struct {
	// inputs fills in what the manifests need from the state directory or the hosts.
	inputs func(ctx context.Context, r *workflow.Run, in *addons.Inputs) error
	// checkHosts proves the hosts carry the add-on's node-side part before 'addons apply' applies it.
	checkHosts func(ctx context.Context, r *workflow.Run) error
	// afterReady runs once the add-on's objects, made from in, are applied and ready: removing what an earlier
	// release left, recording what the next run must keep.
	afterReady func(ctx context.Context, r *workflow.Run, c *kube.Client, in *addons.Inputs) error
}

func addonHooksFor(name string) addonHooks {
	switch name {
	case "coredns":
		return addonHooks{inputs: func(ctx context.Context, r *workflow.Run, in *addons.Inputs) (err error) {
			in.Upstreams, err = corednsUpstreams(ctx, r)
			return err
		}}
	case "quay":
		return addonHooks{afterReady: recordQuayNode, inputs: func(ctx context.Context, r *workflow.Run, in *addons.Inputs) (err error) {
			in.Quay, err = quayState(ctx, r)
			return err
		}}
	case "monitoring":
		return addonHooks{checkHosts: metricsOnHosts, inputs: func(_ context.Context, r *workflow.Run, in *addons.Inputs) (err error) {
			in.Monitoring, err = monitoringState(r)
			return err
		}}
	case "multus":
		return addonHooks{checkHosts: multusOnNodes, afterReady: removeMultusDaemonSet}
	case "kata":
		return addonHooks{checkHosts: kataOnNodes}
	}
	return addonHooks{}
}

// monitoringTargets applies the monitoring add-on again after hosts join: its scrape targets name every host.
func monitoringTargets(b *bundleState) workflow.Phase {
	a, _ := addons.Find("monitoring")
	return addonPhase(b, a, "Apply the monitoring add-on again: Prometheus's targets name every host of cluster.yaml", nil)
}

func applyAddon(ctx context.Context, r *workflow.Run, b *bundleState, a addons.Addon, checkOnly bool) error {
	if err := b.prepare(r); err != nil {
		return err
	}
	in := a.NewInputs(r.Cluster, b.manifest)
	missing := a.MissingImages(&r.Cluster.Spec, b.manifest)
	hooks := addonHooksFor(a.Name)
	if hooks.inputs != nil {
		if err := hooks.inputs(ctx, r, in); err != nil {
			return err
		}
	}
	objs, err := a.Render(in)
	if err != nil {
		return err
	}
	crds, err := a.CRDs()
	if err != nil {
		return err
	}
	var plans []string
	for _, o := range slices.Concat(crds, objs) {
		plans = append(plans, "apply "+kube.Name(o))
	}
	if !r.Wet("", plans...) {
		if len(missing) > 0 {
			r.Warn("", "add-on "+a.Name+" cannot run: "+strings.Join(missing, "; "))
		}
		return nil
	}
	return withControlPlaneAPI(r, func(c *kube.Client) error {
		if len(missing) > 0 || checkOnly {
			return serverDryRun(ctx, r, c, a, crds, objs, missing)
		}
		// the custom resources can only be applied once the API server serves their kinds
		if err := applyObjects(ctx, r, c, crds...); err != nil {
			return err
		}
		if err := c.WaitReady(ctx, crds, addonReadyLimit); err != nil {
			return err
		}
		if err := applyObjects(ctx, r, c, objs...); err != nil {
			return err
		}
		if err := c.WaitReady(ctx, objs, addonReadyLimit); err != nil {
			return err
		}
		deleted, err := c.Prune(ctx, a.Prune, a.PruneSelector, objs)
		for _, d := range deleted {
			r.Changed("", "deleted "+d+" (no longer in cluster.yaml)")
		}
		if err != nil {
			return err
		}
		if hooks.afterReady != nil {
			return hooks.afterReady(ctx, r, c, in)
		}
		return nil
	})
}

// removeMultusDaemonSet deletes what earlier privcloud releases ran Multus with: a DaemonSet that wrote the
// configuration each node now gets from the node phases, and its service account and role. Only objects
// privcloud made are deleted; each pod removes its configuration file as it stops, which leaves the node's
// own in front.
func removeMultusDaemonSet(ctx context.Context, r *workflow.Run, c *kube.Client, _ *addons.Inputs) error {
	legacy := []*unstructured.Unstructured{
		object("apps/v1", "DaemonSet", "kube-multus-ds", nil),
		object("v1", "ServiceAccount", "multus", nil),
		object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "multus", nil),
		object("rbac.authorization.k8s.io/v1", "ClusterRole", "multus", nil),
	}
	for _, o := range legacy[:2] {
		o.SetNamespace("kube-system")
	}
	for _, o := range legacy {
		cur, err := c.Get(ctx, o)
		if err != nil {
			return err
		}
		if cur == nil || cur.GetLabels()["app.kubernetes.io/managed-by"] != "privcloud" {
			continue
		}
		if _, err := c.Delete(ctx, o); err != nil {
			return fmt.Errorf("delete %s: %w", kube.Name(o), err)
		}
		r.Changed("", "deleted "+kube.Name(o)+" (Multus runs from each node's CNI configuration now)")
	}
	return nil
}

// serverDryRun has the API server validate and admit every object without storing it. An add-on whose images
// the bundle lacks gets this far and then fails with the reason, so its manifests are still proven.
func serverDryRun(ctx context.Context, r *workflow.Run, c *kube.Client, a addons.Addon, crds, objs []*unstructured.Unstructured, missing []string) error {
	// objects of kinds the CRDs define can be checked only where the CRDs are already installed
	if len(crds) > 0 {
		if served, err := allServed(ctx, c, crds); err != nil {
			return err
		} else if !served {
			objs = slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return definedBy(crds, o) })
		}
	}
	res, err := c.Apply(ctx, slices.Concat(crds, objs), true)
	if err != nil {
		return fmt.Errorf("add-on %s: server-side dry run: %w", a.Name, err)
	}
	changes := 0
	for _, o := range res {
		if o.Changed {
			changes++
			if len(missing) == 0 {
				r.Plan(sshAction("", "apply "+o.Object+" (accepted by a server-side dry run)"))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: add-on %s cannot run: %s (server-side dry run: the API server accepted all %d objects, %d would change)",
			ErrImagesMissing, a.Name, strings.Join(missing, "; "), len(res), changes)
	}
	return nil
}

// allServed reports whether every CRD is installed and established.
func allServed(ctx context.Context, c *kube.Client, crds []*unstructured.Unstructured) (bool, error) {
	for _, crd := range crds {
		cur, err := c.Get(ctx, crd)
		if err != nil {
			return false, err
		}
		if cur == nil {
			return false, nil
		}
		if ok, _ := kube.Ready(cur); !ok {
			return false, nil
		}
	}
	return true, nil
}

// definedBy reports whether one of the CRDs defines o's kind.
func definedBy(crds []*unstructured.Unstructured, o *unstructured.Unstructured) bool {
	gvk := o.GroupVersionKind()
	for _, crd := range crds {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
		if group == gvk.Group && kind == gvk.Kind {
			return true
		}
	}
	return false
}

// monitoringSecret is the monitoring add-on's Secret of Prometheus's scrape credentials, from the state
// directory as it is now.
func monitoringSecret(r *workflow.Run) (*unstructured.Unstructured, error) {
	a, _ := addons.Find("monitoring")
	in := a.NewInputs(r.Cluster, &bundle.Manifest{}) // the images do not matter: only the Secret is kept
	if err := addonHooksFor(a.Name).inputs(context.Background(), r, in); err != nil {
		return nil, err
	}
	objs, err := a.Render(in)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() == "Secret" && o.GetName() == addons.MonitoringSecret {
			return o, nil
		}
	}
	return nil, fmt.Errorf("add-on monitoring renders no Secret %s", addons.MonitoringSecret)
}

// monitoringState reads Prometheus's client certificate and the cluster CA from the state directory.
func monitoringState(r *workflow.Run) (*addons.MonitoringState, error) {
	m := &addons.MonitoringState{}
	if r.DryRun {
		m.CACert, m.ClientCert, m.ClientKey = []byte("(the cluster CA)"), []byte("(issued)"), []byte("(issued)")
		return m, nil
	}
	var err error
	m.ClientCert, m.ClientKey, m.CACert, err = leafWithCA(r, pki.PrometheusClientCert, "Prometheus's client certificate")
	return m, err
}

// leafWithCA reads a certificate of the state directory, its key and the cluster CA, for an add-on that hands
// them to its pods; what names the certificate in the error.
func leafWithCA(r *workflow.Run, name, what string) (cert, key, ca []byte, err error) {
	store := PKIStore(r.Cluster)
	for _, f := range []struct {
		dst  *[]byte
		path string
	}{{&cert, store.CertPath(name)}, {&key, store.KeyPath(name)}, {&ca, store.CertPath(pki.ClusterCA)}} {
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w (run 'privcloud certs generate')", what, err)
		}
	}
	return cert, key, ca, nil
}

// quayState gathers Quay's secrets (made once, kept 0600 in the state directory), its certificate from the
// cluster PKI and the node that keeps its hostPath data (quayNode).
func quayState(ctx context.Context, r *workflow.Run) (*addons.QuayState, error) {
	node, err := quayNode(ctx, r)
	if err != nil {
		return nil, err
	}
	q := &addons.QuayState{Node: node}
	if r.DryRun {
		q.Secrets = addons.QuaySecrets{DatabasePassword: "(generated)", RedisPassword: "(generated)", SecretKey: "(generated)", DatabaseSecretKey: "(generated)"}
		return q, nil
	}
	secrets, err := addons.LoadOrCreateQuaySecrets(filepath.Join(r.Cluster.Spec.StateDir, "addons", "quay-secrets.json"))
	if err != nil {
		return nil, err
	}
	q.Secrets = secrets
	q.TLSCert, q.TLSKey, q.CACert, err = leafWithCA(r, pki.QuayCert, "Quay's certificate")
	return q, err
}

func quayNodeRecord(r *workflow.Run) string {
	return filepath.Join(r.Cluster.Spec.StateDir, "addons", "quay-node")
}

// quayNode is the node whose hostPathDir holds Quay's data: the one recorded in the state directory once Quay
// was applied, else the node a running Quay's database is pinned to, else the first worker (or the first
// node). Reordering, adding or removing hosts in cluster.yaml never moves Quay onto an empty folder. A node
// cluster.yaml no longer has, or a storageClass set over recorded data, is refused: the data would stay behind.
func quayNode(ctx context.Context, r *workflow.Run) (string, error) {
	path := quayNodeRecord(r)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	node, from := strings.TrimSpace(string(b)), "recorded in "+path
	q := r.Cluster.Spec.Addons.Quay
	switch {
	case node != "" && q.StorageClass != "":
		return "", fmt.Errorf("spec.addons.quay.storageClass is %s, but Quay's data is in %s on node %s (%s): copy it into Quay's volumes first, then delete %s",
			q.StorageClass, q.HostPathDir, node, from, path)
	case q.StorageClass != "":
		return "", nil // volumes follow the pods
	case node == "":
		if node, err = runningQuayNode(ctx, r); err != nil {
			return "", err
		}
		from = "where the running Quay keeps it"
	}
	if node == "" {
		return firstNode(r.Cluster.Spec.Hosts), nil
	}
	if !slices.ContainsFunc(r.Cluster.Spec.Hosts, func(h api.Host) bool { return h.Name == node && h.IsNode() }) {
		return "", fmt.Errorf("Quay's data is in %s on node %s (%s), which cluster.yaml no longer has as a node: copy the folder to another node, then write that node's name into %s",
			q.HostPathDir, node, from, path)
	}
	return node, nil
}

// runningQuayNode is the node a running Quay's database is pinned to ("" when none runs, or in a dry run).
func runningQuayNode(ctx context.Context, r *workflow.Run) (string, error) {
	var node string
	err := withControlPlaneAPI(r, func(c *kube.Client) error {
		d, err := c.Kube.AppsV1().Deployments(pki.QuayNamespace).Get(ctx, "quay-postgresql", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		node = d.Spec.Template.Spec.NodeSelector["kubernetes.io/hostname"]
		return nil
	})
	return node, err
}

// recordQuayNode records, once Quay's objects are applied and ready, the node they keep its hostPath data on.
func recordQuayNode(_ context.Context, r *workflow.Run, _ *kube.Client, in *addons.Inputs) error {
	path := quayNodeRecord(r)
	if r.DryRun || in.Quay.Node == "" { // a plan, or volumes that follow the pods
		return nil
	}
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(in.Quay.Node+"\n"), 0o600)
}

func firstNode(hosts []api.Host) string {
	for _, role := range []api.Role{api.RoleWorker, api.RoleControlPlane} {
		for _, h := range hosts {
			if h.HasRole(role) {
				return h.Name
			}
		}
	}
	return ""
}

// corednsUpstreams decides where CoreDNS forwards names outside the cluster: the configured upstreams, else
// the nodes' resolver configuration (CoreDNS runs with the file the kubelet gives pods: podResolvConf). Hosts without a usable
// nameserver (air-gapped hosts often have none; loopback stubs are unreachable from a pod) leave nothing to
// forward to: CoreDNS then answers for the cluster only, with a warning, rather than crash-looping.
func corednsUpstreams(ctx context.Context, r *workflow.Run) ([]string, error) {
	if up := r.Cluster.Spec.Addons.CoreDNS.Upstreams; len(up) > 0 {
		return up, nil
	}
	usable, err := askEach(ctx, r, r.TargetsFor(nodes), func(ctx context.Context, t *workflow.Target) (bool, error) {
		_, data, err := podResolvConf(ctx, t.Host)
		return len(usableNameservers(data)) > 0, err
	})
	if err != nil {
		return nil, err
	}
	var with, without []string
	for i, t := range r.TargetsFor(nodes) {
		if usable[i] {
			with = append(with, t.Spec.Name)
		} else {
			without = append(without, t.Spec.Name)
		}
	}
	switch {
	case len(without) == 0:
		return []string{"/etc/resolv.conf"}, nil
	case len(with) == 0:
		r.Warn("", "no node's resolv.conf names a nameserver reachable from pods and spec.addons.coredns.upstreams is empty: CoreDNS answers for the cluster only")
		return nil, nil
	default:
		return nil, fmt.Errorf("hosts %s have a nameserver in their resolv.conf and hosts %s have none reachable from pods: set spec.addons.coredns.upstreams",
			strings.Join(with, ", "), strings.Join(without, ", "))
	}
}

// Addons is the workflow behind 'privcloud addons apply': the add-on phases of init on their own.
func Addons(o *AddonOptions) workflow.Workflow {
	b := &bundleState{}
	certs := &certsState{}
	return workflow.Workflow{Name: "addons apply", Phases: []workflow.Phase{
		connect(),
		// Quay's certificate is part of the PKI tree once Quay is enabled: made here if init ran without it
		{Name: "certs", Short: "Create the certificates the add-ons need in the local PKI (existing ones are kept)", Required: true, Run: certs.generate},
		addonImages(b, o),
		addonMirrors(o),
		addonPhases(b, o),
	}}
}

// addonMirrors writes every node's registry mirrors, Quay among them when it is the cluster's registry: a Quay
// turned on, or its hostname changed, since init is pulled through at once. containerd reads them at each pull,
// without a restart.
func addonMirrors(o *AddonOptions) workflow.Phase {
	return workflow.Phase{Name: "mirrors", Short: "Write each node's registry mirrors (Quay's among them when it is the cluster's registry)", Required: true, Roles: nodes,
		Skip: func(*workflow.Run) string {
			if o != nil && o.ServerDryRun {
				return "a server dry run changes nothing"
			}
			return ""
		},
		RunHost: writeRegistryMirrors}
}

// addonImages imports on every node the images of the enabled add-ons it lacks: init leaves out the images of
// add-ons that are off, so one turned on since finds its images here. A server dry run imports nothing.
func addonImages(b *bundleState, o *AddonOptions) workflow.Phase {
	return workflow.Phase{Name: "images", Short: "Import into each node's containerd the images of the enabled add-ons it lacks", Required: true, Roles: nodes,
		Skip: func(*workflow.Run) string {
			if o != nil && o.ServerDryRun {
				return "a server dry run changes nothing"
			}
			return ""
		},
		RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
			return importImages(ctx, r, t, b)
		}}
}

// AddonStatus is what the cluster holds of one add-on.
type AddonStatus struct {
	Addon    string         `json:"addon"`
	Disabled string         `json:"disabled,omitempty"`
	Missing  []string       `json:"missingImages,omitempty"`
	Objects  []ObjectStatus `json:"objects,omitempty"`
	Ready    bool           `json:"ready"`
}

// ObjectStatus is one object of an add-on in the cluster.
type ObjectStatus struct {
	Object string `json:"object"`
	State  string `json:"state"` // ready, missing or progressing
	Detail string `json:"detail,omitempty"`
}

// AddonsStatus reports, for every add-on, whether each of its objects exists in the cluster and is ready
// (rolled out, established), reading through the first control-plane host. Nothing is changed.
func AddonsStatus(ctx context.Context, c *api.Cluster, connect func(context.Context, api.Host) (ssh.Host, error)) ([]AddonStatus, error) {
	m, err := verifiedManifest(c.Spec.Bundle.Path, filepath.Join(c.Spec.StateDir, "bundle"), c.Spec.Bundle.PublicKeys...)
	if err != nil {
		return nil, err
	}
	cps := c.Spec.HostsWithRole(api.RoleControlPlane)
	if len(cps) == 0 {
		return nil, errors.New("cluster.yaml has no control-plane host")
	}
	h, err := connect(ctx, cps[0])
	if err != nil {
		return nil, err
	}
	defer h.Close()
	client, err := kube.New(PKIStore(c).KubeconfigPath("super-admin"), "127.0.0.1:6443", h.Dial)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	var out []AddonStatus
	for _, a := range addons.All() {
		st := AddonStatus{Addon: a.Name, Disabled: a.Disabled(&c.Spec), Missing: a.MissingImages(&c.Spec, m)}
		if st.Disabled != "" {
			out = append(out, st)
			continue
		}
		// the objects' names and kinds are all status needs: secrets and resolvers are stood in for
		in := a.NewInputs(c, m)
		objs, err := a.Render(in)
		if err != nil {
			return nil, err
		}
		crds, err := a.CRDs()
		if err != nil {
			return nil, err
		}
		st.Ready = len(st.Missing) == 0 // objects that stand without their images are not an add-on that runs
		for _, o := range slices.Concat(crds, objs) {
			os := ObjectStatus{Object: kube.Name(o), State: "ready"}
			cur, err := client.Get(ctx, o)
			switch {
			case err != nil:
				return nil, err
			case cur == nil:
				os.State = "missing"
			default:
				if ok, why := kube.Ready(cur); !ok {
					os.State, os.Detail = "progressing", why
				}
			}
			st.Ready = st.Ready && os.State == "ready"
			st.Objects = append(st.Objects, os)
		}
		out = append(out, st)
	}
	return out, nil
}
