package phases

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/templates"
	"github.com/privcloud/privcloud/upgrade"
)

// upgradeCordon is the kube.CordonedBy reason of the nodes an upgrade drains.
const upgradeCordon = "upgrade"

// gateLimit bounds how long a switched service may take to prove itself healthy, checked every gateEvery. A
// service that keeps exiting fails its gate long before (gateRestarts).
var gateLimit, gateEvery = 3 * time.Minute, time.Second

// gateRestarts is how many times a service may exit after its restart before its gate fails at once.
const gateRestarts = 2

// upgradeService is one service an upgrade switches on a host, and the binaries that switch with it.
type upgradeService struct {
	unit string
	// binaries: the unit's own first; the others (etcdctl, kubectl) only have their links switched
	binaries []string
	// node services run after the host is drained, and on every control plane only after all control planes'
	// API servers are upgraded: a kubelet is never newer than an API server
	node bool
	// files are the service's files at a version; nil when none names the version
	files func(ctx context.Context, r *workflow.Run, t *workflow.Target, version string) ([]hostops.File, error)
	// reconnects: the cluster's clients reconnect after its restart (the API server); its gate also waits for
	// their watches to come back, as a node whose kube-proxy still waits to reconnect would keep sending
	// Service traffic to pods a drain removes
	reconnects bool
	// lease is the leader-election lease of a component that runs only while it leads: its gate also waits until
	// a live instance holds it
	lease string
	// probe makes the service's health check for its gate
	probe func(r *workflow.Run, t *workflow.Target, version string) (check func(context.Context) error, done func(), err error)
}

// upgradeServices are the services in the order a host's upgrade takes them.
var upgradeServices = []upgradeService{
	{unit: "etcd", binaries: upgrade.EtcdComponents, probe: etcdProbe},
	{unit: "kube-apiserver", binaries: []string{"kube-apiserver"}, files: upgradedAPIServerFiles, probe: apiServerProbe, reconnects: true},
	{unit: "kube-controller-manager", binaries: []string{"kube-controller-manager"}, files: leaderElectedFiles("kube-controller-manager"), probe: selfSignedProbe("127.0.0.1:10257"),
		lease: "kube-controller-manager"},
	{unit: "kube-scheduler", binaries: []string{"kube-scheduler"}, files: leaderElectedFiles("kube-scheduler"), probe: selfSignedProbe("127.0.0.1:10259"),
		lease: "kube-scheduler"},
	{unit: "kubelet", binaries: []string{"kubelet", "kubectl"}, node: true, files: kubeletFiles, probe: kubeletProbe},
	{unit: "kube-proxy", binaries: []string{"kube-proxy"}, node: true, probe: kubeProxyProbe,
		files: func(_ context.Context, r *workflow.Run, t *workflow.Target, v string) ([]hostops.File, error) {
			return kubeProxyFiles(r, t, v), nil
		}},
}

// hostUpgrade is one host's part of an upgrade.
type hostUpgrade struct {
	run    *workflow.Run
	target *workflow.Target
	plan   upgrade.HostPlan
}

// apply switches the host's control-plane services (node false) or node services (node true) to the plan's
// versions, one after another. Node services go with the node cordoned and drained, uncordoned after. The
// first service that fails its gate is switched back to its previous version and ends the host's upgrade.
func (h *hostUpgrade) apply(ctx context.Context, node bool) error {
	changes := map[string]upgrade.Change{}
	for _, c := range h.plan.Changes {
		changes[c.Component] = c
	}
	drained := false
	for _, svc := range upgradeServices {
		if svc.node != node {
			continue
		}
		var moves []upgrade.Change
		for _, b := range svc.binaries {
			if c, ok := changes[b]; ok {
				moves = append(moves, c)
			}
		}
		if len(moves) == 0 {
			continue
		}
		if node && !drained {
			if err := h.drain(ctx); err != nil {
				return err
			}
			drained = true
		}
		switchTo := func() error { return h.switchService(ctx, svc, moves, func(c upgrade.Change) string { return c.To }) }
		var err error
		if svc.unit == "etcd" { // a stacked API server would hold requests while its member restarts
			err = withAPIServerDrained(ctx, h.run, h.target, switchTo)
		} else {
			err = switchTo()
		}
		if err != nil {
			return h.switchBack(ctx, svc, moves, drained, err)
		}
	}
	if drained {
		return h.uncordon(ctx)
	}
	return nil
}

// switchBack returns a service whose gate failed to the versions it ran before, and reports both.
func (h *hostUpgrade) switchBack(ctx context.Context, svc upgradeService, moves []upgrade.Change, drained bool, failure error) error {
	name, main := h.target.Spec.Name, moves[0]
	report := fmt.Sprintf("%s could not be switched to %s on %s: %v", svc.unit, main.To, name, failure)
	var gf *gateFailure
	if errors.As(failure, &gf) {
		report = fmt.Sprintf("%s %s failed its health gate on %s: %v", svc.unit, main.To, name, failure)
	}
	if main.From == "" {
		return fmt.Errorf("%s\nno earlier version of %s to switch back to: fix the cause and re-run 'privcloud upgrade apply'", report, svc.unit)
	}
	if err := h.switchService(ctx, svc, moves, func(c upgrade.Change) string { return c.From }); err != nil {
		stays := ""
		if drained {
			stays = "; the node stays cordoned"
		}
		return fmt.Errorf("%s\nswitching it back to %s failed too: %v%s\nif the cluster does not recover, 'privcloud restore' the backup this run saved (backups/ in the state directory)",
			report, main.From, err, stays)
	}
	h.run.Changed(name, fmt.Sprintf("%s switched back to %s", svc.unit, main.From))
	back := fmt.Sprintf("switched back to %s automatically: it runs and is healthy again", main.From)
	if drained {
		if err := h.uncordon(ctx); err != nil {
			return fmt.Errorf("%s\n%s, but uncordoning %s failed: %v", report, back, name, err)
		}
		back += ", and the node is uncordoned"
	}
	return fmt.Errorf("%s\n%s. The hosts after it were not touched. Fix the cause and re-run 'privcloud upgrade apply': it continues with %s on %s",
		report, back, svc.unit, name)
}

// switchService points the links of the moved binaries at the versions pick gives, writes the service's files for
// its binary's version, restarts it unless it already runs that binary, and waits for its gate.
func (h *hostUpgrade) switchService(ctx context.Context, svc upgradeService, moves []upgrade.Change, pick func(upgrade.Change) string) error {
	r, t := h.run, h.target
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, m := range moves {
		dst := path.Join(RemoteBinDir, m.Component, pick(m), m.Component)
		fmt.Fprintf(&script, "[ -x %[1]s ] || { echo '%[1]s is missing: send it with privcloud upgrade apply --only bundle' >&2; exit 1; }\n", dst)
		script.WriteString(hostops.SwitchLinkScript(activeLink(bundle.Component{Name: m.Component}), dst))
	}
	restarts := moves[0].Component == svc.binaries[0]
	version := pick(moves[0])
	want := path.Join(RemoteBinDir, svc.binaries[0], version, svc.binaries[0])
	changed := false
	if restarts && svc.files != nil {
		files, err := svc.files(ctx, r, t, version)
		if err != nil {
			return err
		}
		if changed, err = writeFiles(ctx, r, t, files...); err != nil {
			return err
		}
	}
	if restarts {
		if changed {
			script.WriteString("systemctl daemon-reload\n")
		}
		fmt.Fprintf(&script, `pid=$(systemctl show -p MainPID --value %[1]s); exe=$(readlink /proc/$pid/exe 2>/dev/null || true)
if [ %[2]t = true ] || [ "${exe%% (deleted)}" != %[3]s ]; then systemctl restart %[1]s; echo restarted; fi
echo "restarts $(systemctl show -p NRestarts --value %[1]s)"
`, svc.unit, changed, want)
	}
	watchers := 0
	if restarts && svc.reconnects && !r.DryRun {
		watchers = endpointWatchers(ctx, r) // best effort: none read means nothing to wait for
	}
	res, err := t.Host.Run(ctx, script.String())
	if err != nil {
		return err
	}
	restarted := false
	base := 0
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		switch {
		case line == "restarted":
			restarted = true
			r.Changed(t.Spec.Name, fmt.Sprintf("%s restarted on %s", svc.unit, version))
		case strings.HasPrefix(line, "restarts "):
			base, _ = strconv.Atoi(strings.TrimPrefix(line, "restarts "))
		case line != "":
			r.Changed(t.Spec.Name, "linked "+line)
		}
	}
	if !restarts || r.DryRun {
		return nil
	}
	check, done, err := healthCheck(ctx, r, t, svc, version, restarted)
	if err != nil {
		return err
	}
	defer done()
	if err := gate(ctx, t, svc.unit, want, base, check); err != nil {
		return err
	}
	if restarted && watchers > 0 {
		waitWatchers(ctx, r, t, watchers)
	}
	return nil
}

// healthCheck is a service's gate check at version: its probe and, for a leader-elected component that
// restarted (leases), a live instance holding its lease. done releases what the check holds.
func healthCheck(ctx context.Context, r *workflow.Run, t *workflow.Target, svc upgradeService, version string, leases bool) (check func(context.Context) error, done func(), err error) {
	probe, closeProbe, err := svc.probe(r, t, version)
	if err != nil {
		return nil, nil, err
	}
	if svc.lease == "" || !leases {
		return probe, closeProbe, nil
	}
	leads, closeLease, err := leaderCheck(ctx, r, svc.lease)
	if err != nil {
		closeProbe()
		return nil, nil, err
	}
	return func(ctx context.Context) error {
			if err := probe(ctx); err != nil {
				return err
			}
			return leads(ctx)
		}, func() {
			closeLease()
			closeProbe()
		}, nil
}

// leaseReadLimit bounds how long a gate tries to read a lease before its check starts.
var leaseReadLimit = time.Minute

// leaderCheck is a check that passes once a live instance holds the lease name. Read right after a restart,
// the lease may still name the instance that was just stopped, which never renews it again: a new holder, or
// the same holder renewing (another host's instance), proves a leader runs. Until one does, no controller
// works: a pod drained then would stay in its Service's endpoints and no replacement would be made.
func leaderCheck(ctx context.Context, r *workflow.Run, name string) (func(context.Context) error, func(), error) {
	c, err := controlPlaneAPI(r)
	if err != nil {
		return nil, nil, err
	}
	read := func(ctx context.Context) (holder string, renewed time.Time, err error) {
		l, err := c.Kube.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", time.Time{}, nil
		}
		if err != nil {
			return "", time.Time{}, err
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			renewed = l.Spec.RenewTime.Time
		}
		return holder, renewed, nil
	}
	// the API server read may be restarting in another host's turn (its etcd member's, say): the first read is
	// tried again like every later one
	var stoppedHolder string
	var stoppedRenewal time.Time
	err = wait.Poll(ctx, leaseReadLimit, time.Second, func() error {
		var err error
		stoppedHolder, stoppedRenewal, err = read(ctx)
		return err
	})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("read the %s lease: %w", name, err)
	}
	return func(ctx context.Context) error {
		holder, renewed, err := read(ctx)
		if err != nil {
			return err
		}
		if holder == "" || holder == stoppedHolder && renewed.Equal(stoppedRenewal) {
			return fmt.Errorf("no running %s leads yet (its lease names %q, which has not renewed it since the restart)", name, holder)
		}
		return nil
	}, c.Close, nil
}

// endpointWatchers counts the EndpointSlice watches open on every API server: each node's kube-proxy holds
// one, and so does the controller-manager.
func endpointWatchers(ctx context.Context, r *workflow.Run) int {
	n := 0
	for _, t := range r.TargetsFor(controlPlane) {
		if t.Host == nil {
			continue
		}
		c, err := apiVia(r, t.Host)
		if err != nil {
			continue
		}
		data, err := c.Kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		c.Close()
		if err == nil {
			n += watchCount(string(data), "endpointslices")
		}
	}
	return n
}

// watchCount sums the open WATCH requests on resource in an API server's metrics.
func watchCount(metrics, resource string) int {
	n, _ := kube.MetricSum(metrics, "apiserver_longrunning_requests", `resource="`+resource+`"`, `verb="WATCH"`)
	return n
}

// waitWatchers waits until as many EndpointSlice watches are open as before an API server's restart. Clients
// back off between reconnection attempts (up to 30 s), and a kube-proxy not yet back keeps its node's rules
// as they were: a pod drained meanwhile would still get that node's Service traffic. A watcher that does not
// come back (a node down) is a warning, not a failed gate.
func waitWatchers(ctx context.Context, r *workflow.Run, t *workflow.Target, want int) {
	got := 0
	err := wait.Poll(ctx, 90*time.Second, gateEvery, func() error {
		if got = endpointWatchers(ctx, r); got < want {
			return fmt.Errorf("%d of %d", got, want)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.Warn(t.Spec.Name, fmt.Sprintf("%d of the %d EndpointSlice watches open before kube-apiserver restarted came back within 90 s: a node's kube-proxy may still run on stale rules", got, want))
	}
}

// gate waits until the unit runs the binary want, has not exited more than gateRestarts times since its
// restart (base: its restart count then), and its health check passed twice in a row, a second apart.
func gate(ctx context.Context, t *workflow.Target, unit, want string, base int, check func(context.Context) error) error {
	passed := 0
	err := wait.Poll(ctx, gateLimit, gateEvery, func() error {
		st, err := unitState(ctx, t.Host, unit)
		if err != nil {
			return err
		}
		if n := st.restarts - base; n >= gateRestarts {
			return wait.Stop(fmt.Errorf("%s exited %d times since its restart", unit, n))
		}
		if st.exe != want {
			passed = 0
			return fmt.Errorf("%s runs %q (%s), not %s", unit, st.exe, st.state, want)
		}
		if err := check(ctx); err != nil {
			passed = 0
			return err
		}
		if passed++; passed < 2 {
			return errors.New("healthy once")
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return &gateFailure{fmt.Errorf("%w; its journal ends:\n%s", err, hostops.JournalTail(ctx, t.Host, unit))}
	}
	return err
}

// gateFailure is a service that was switched and restarted but did not prove itself healthy.
type gateFailure struct{ err error }

func (e *gateFailure) Error() string { return e.err.Error() }
func (e *gateFailure) Unwrap() error { return e.err }

type unitStatus struct {
	exe, state string
	restarts   int
}

// unitState reads what a unit runs (its main process's binary), its state and its restart count.
func unitState(ctx context.Context, h ssh.Host, unit string) (unitStatus, error) {
	res, err := h.Run(ctx, fmt.Sprintf(`systemctl show -p NRestarts -p ActiveState -p SubState %[1]s
pid=$(systemctl show -p MainPID --value %[1]s); exe=$(readlink /proc/$pid/exe 2>/dev/null || true); echo "Exe=${exe%% (deleted)}"`, unit), ssh.ReadOnly())
	if err != nil {
		return unitStatus{}, err
	}
	var st unitStatus
	var sub string
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "NRestarts":
			st.restarts, _ = strconv.Atoi(v)
		case "ActiveState":
			st.state = v
		case "SubState":
			sub = v
		case "Exe":
			st.exe = v
		}
	}
	st.state += "/" + sub
	return st, nil
}

// drain cordons the host's node and evicts its pods; a drain that cannot finish uncordons the node again.
func (h *hostUpgrade) drain(ctx context.Context) error {
	name := h.target.Spec.Name
	if h.run.DryRun {
		h.run.Plan(sshAction("", "cordon and drain node "+name))
		return nil
	}
	return withControlPlaneAPI(h.run, func(c *kube.Client) error {
		if alone, err := onlySchedulableNode(ctx, c, name); err != nil || alone {
			if alone {
				h.run.Warn(name, "the only schedulable node: not drained, its pods keep running while its kubelet restarts")
			}
			return err
		}
		if err := proxiesFollow(ctx, h.run, c); err != nil {
			return fmt.Errorf("before draining %s: %w", name, err)
		}
		found, err := c.Cordon(ctx, name, upgradeCordon)
		if err != nil || !found {
			return err
		}
		if err := c.EvictPods(ctx, name, 5*time.Minute); err != nil {
			if _, uerr := c.Uncordon(ctx, name); uerr != nil {
				return fmt.Errorf("node %s: %w; uncordoning it failed too: %v", name, err, uerr)
			}
			return fmt.Errorf("node %s: %w; it is uncordoned again and nothing on it was upgraded", name, err)
		}
		h.run.Changed(name, "cordoned and drained")
		return nil
	})
}

// onlySchedulableNode tells whether no other node is Ready and schedulable: draining the node would then
// leave its pods nowhere to go, while a kubelet's restart leaves running containers alone.
func onlySchedulableNode(ctx context.Context, c *kube.Client, name string) (bool, error) {
	list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, n := range list.Items {
		if n.Name != name && !n.Spec.Unschedulable && kube.NodeReady(&n) {
			return false, nil
		}
	}
	return true, nil
}

func (h *hostUpgrade) uncordon(ctx context.Context) error {
	if h.run.DryRun {
		return nil
	}
	return withControlPlaneAPI(h.run, func(c *kube.Client) error {
		done, err := c.Uncordon(ctx, h.target.Spec.Name)
		if done {
			h.run.Changed(h.target.Spec.Name, "uncordoned")
		}
		return err
	})
}

func upgradedAPIServerFiles(_ context.Context, r *workflow.Run, t *workflow.Target, version string) ([]hostops.File, error) {
	return apiServerFiles(r.Cluster.Spec, t.Spec, version)
}

func leaderElectedFiles(unit string) func(context.Context, *workflow.Run, *workflow.Target, string) ([]hostops.File, error) {
	return func(_ context.Context, r *workflow.Run, _ *workflow.Target, version string) ([]hostops.File, error) {
		content, err := templates.Render(unit+".service", leaderElectedData(r, unit, version))
		return []hostops.File{{Path: "/etc/systemd/system/" + unit + ".service", Content: content, Mode: 0o600}}, err
	}
}

// httpsProbe checks https://addr/path on the host for want, as the client of store's certificate name.
func httpsProbe(r *workflow.Run, t *workflow.Target, ca, client, addr, path, want string) (func(context.Context) error, func(), error) {
	store := PKIStore(r.Cluster)
	cfg, err := hostops.ClientTLS(store.CertPath(ca), store.CertPath(client), store.KeyPath(client))
	if err != nil {
		return nil, nil, err
	}
	p := hostops.NewHealthProbe(t.Host, "https", addr, path, want, cfg)
	return p.Check, p.Close, nil
}

func etcdProbe(r *workflow.Run, t *workflow.Target, _ string) (func(context.Context) error, func(), error) {
	return httpsProbe(r, t, pki.EtcdCA, "etcd/healthcheck-client", "127.0.0.1:2379", "/health", `"health":"true"`)
}

// apiServerProbe is /readyz: etcd reachable, every post-start hook done, informers synced.
func apiServerProbe(r *workflow.Run, t *workflow.Target, _ string) (func(context.Context) error, func(), error) {
	return httpsProbe(r, t, pki.ClusterCA, "apiserver-kubelet-client", "127.0.0.1:6443", "/readyz", "ok")
}

// selfSignedProbe checks /healthz of a component serving its own self-signed certificate on the host's
// loopback (the controller-manager, the scheduler), as kubeadm's liveness probes do: no credential is sent.
func selfSignedProbe(addr string) func(*workflow.Run, *workflow.Target, string) (func(context.Context) error, func(), error) {
	return func(_ *workflow.Run, t *workflow.Target, _ string) (func(context.Context) error, func(), error) {
		p := hostops.NewHealthProbe(t.Host, "https", addr, "/healthz", "ok", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // a loopback health check through SSH, no credential sent
		return p.Check, p.Close, nil
	}
}

func kubeProxyProbe(_ *workflow.Run, t *workflow.Target, _ string) (func(context.Context) error, func(), error) {
	p := hostops.NewHealthProbe(t.Host, "http", "127.0.0.1:10256", "/healthz", "", nil)
	return p.Check, p.Close, nil
}

// kubeletProbe: the node is Ready and the kubelet reporting it is the new one.
func kubeletProbe(r *workflow.Run, t *workflow.Target, version string) (func(context.Context) error, func(), error) {
	c, err := controlPlaneAPI(r)
	if err != nil {
		return nil, nil, err
	}
	name := t.Spec.Name
	return func(ctx context.Context) error {
		n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v := n.Status.NodeInfo.KubeletVersion; v != version {
			return fmt.Errorf("node %s reports kubelet %s, not %s", name, v, version)
		}
		if !kube.NodeReady(n) {
			return fmt.Errorf("node %s is not Ready: %s", name, readyMessage(n))
		}
		return nil
	}, c.Close, nil
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Reason + " " + c.Message
		}
	}
	return "no Ready condition"
}
