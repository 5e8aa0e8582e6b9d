package phases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// UpgradeOptions are what 'upgrade apply' takes besides cluster.yaml.
type UpgradeOptions struct {
	// ConfigPath gives cluster.yaml's path, saved in the pre-upgrade backup (asked when the backup is taken:
	// the command's flags are parsed after its workflow is made).
	ConfigPath func() string
	// WorkerBatchPercent is how many workers go together, as a percentage of them (at least one).
	WorkerBatchPercent int
}

// Upgrade moves a running cluster to spec.kubernetesVersion: the plan is checked, etcd is backed up, the new
// binaries are staged beside the running ones, then control planes go one at a time and workers in batches,
// each service gated on health and switched back automatically when its gate fails.
func Upgrade(o *UpgradeOptions) workflow.Workflow {
	u := &upgradeRun{opts: o}
	b := &bundleState{stageOnly: true}
	return workflow.Workflow{Name: "upgrade", Command: "upgrade apply", Phases: []workflow.Phase{
		connect(),
		{Name: "plan", Short: "Read every host's versions; refuse what the version-skew policy, etcd or the bundle forbid", Required: true, Run: u.makePlan},
		{Name: "backup", Short: "Snapshot etcd and save it with the PKI and cluster.yaml in the state directory's backups", Skip: u.upToDate, Run: u.backup},
		{Name: "bundle", Short: "Send each host the new binaries beside the running ones, verified by sha256 (no link is switched)", Skip: u.upToDate,
			RunHost: b.distribute},
		{Name: "images", Short: "Import the new bundle's images into each host's containerd before any service switches", Skip: u.upToDate,
			RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
				return importImages(ctx, r, t, b)
			}},
		{Name: "control-plane", Short: "Upgrade etcd members and control planes one host at a time, each service gated on health", Skip: u.upToDate,
			Run: func(ctx context.Context, r *workflow.Run) error { return u.upgradeBatches(ctx, r, true) }},
		{Name: "workers", Short: "Cordon, drain, upgrade and uncordon workers in batches, each service gated on health",
			Run: func(ctx context.Context, r *workflow.Run) error { return u.upgradeBatches(ctx, r, false) }},
	}}
}

// upgradeRun is one run of the upgrade workflow: the plan its phases follow.
type upgradeRun struct {
	opts *UpgradeOptions
	plan upgrade.Plan
	// controlPlanesDone: this run's control-plane phase finished
	controlPlanesDone bool
}

func (u *upgradeRun) makePlan(ctx context.Context, r *workflow.Run) error {
	hosts := make([]ssh.Host, len(r.Targets))
	for i, t := range r.Targets {
		hosts[i] = t.Host
	}
	p, err := planOn(ctx, r.Cluster, hosts, u.opts.WorkerBatchPercent)
	if err != nil {
		return err
	}
	u.plan = p
	if err := p.Refused(); err != nil {
		return err
	}
	if p.UpToDate() {
		return workflow.Skip("every host runs " + p.To)
	}
	if r.DryRun {
		for _, h := range p.Hosts {
			for _, c := range h.Changes {
				r.Plan(sshAction(h.Host, fmt.Sprintf("upgrade %s %s -> %s", c.Component, c.From, c.To)))
			}
		}
	}
	return nil
}

func (u *upgradeRun) upToDate(*workflow.Run) string {
	if u.plan.UpToDate() {
		return "every host runs " + u.plan.To
	}
	return ""
}

// backup saves the cluster as it is before anything changes: 'privcloud restore FILE' brings it back.
func (u *upgradeRun) backup(ctx context.Context, r *workflow.Run) error {
	c := r.Cluster
	out := filepath.Join(c.Spec.StateDir, "backups", fmt.Sprintf("%s-before-%s-%s.tar.zst", c.Metadata.Name, u.plan.To, time.Now().UTC().Format(fileTime)))
	return saveBackup(ctx, r, u.opts.ConfigPath(), out)
}

// upgradeBatches upgrades the plan's batches of control planes (etcd members and control-plane hosts, one
// at a time) or of workers (together within a batch). Control planes go twice: first etcd and the control
// plane on each, then each one's node services, so no kubelet is ever newer than an API server. The first
// batch that fails stops the run. The workers phase ends by uncordoning nodes a stopped run left cordoned.
func (u *upgradeRun) upgradeBatches(ctx context.Context, r *workflow.Run, controlPlanes bool) error {
	hostPlans := map[string]upgrade.HostPlan{}
	for _, h := range u.plan.Hosts {
		hostPlans[h.Host] = h
	}
	targets := map[string]*workflow.Target{}
	for _, t := range r.Targets {
		targets[t.Spec.Name] = t
	}
	var batches [][]string
	for _, b := range u.plan.Batches {
		if isControlPlane(targets[b[0]].Spec) == controlPlanes {
			batches = append(batches, b)
		}
	}
	passes := []bool{true} // node services
	if controlPlanes {
		passes = []bool{false, true}
	} else if pending := u.pendingControlPlanes(targets); len(pending) > 0 && !u.controlPlanesDone {
		// --only workers or --skip control-plane must not put a kubelet ahead of an API server
		return fmt.Errorf("the control planes %s are not upgraded yet: the skew policy has them go before the workers (run the control-plane phase first)",
			strings.Join(pending, ", "))
	}
	for _, node := range passes {
		for _, batch := range batches {
			err := parallel.Each(batch, func(name string) error {
				return (&hostUpgrade{run: r, target: targets[name], plan: hostPlans[name]}).apply(ctx, node)
			})
			if err != nil {
				return err
			}
		}
	}
	if controlPlanes {
		u.controlPlanesDone = true
	} else if err := finishUpgrade(ctx, r); err != nil {
		return err
	}
	if len(batches) == 0 && !u.plan.UpToDate() {
		return workflow.Skip("no host of this kind has anything to upgrade")
	}
	return nil
}

// pendingControlPlanes are the control-plane and etcd hosts the plan still has changes for.
func (u *upgradeRun) pendingControlPlanes(targets map[string]*workflow.Target) []string {
	var out []string
	for _, h := range u.plan.Hosts {
		if len(h.Changes) > 0 && isControlPlane(targets[h.Host].Spec) {
			out = append(out, h.Host)
		}
	}
	return out
}

func isControlPlane(h api.Host) bool {
	return h.HasRole(api.RoleControlPlane) || h.HasRole(api.RoleEtcd)
}

// finishUpgrade uncordons the nodes an upgrade cordoned and did not get to uncordon (a run that was
// interrupted: once every node is upgraded, none has a reason to stay cordoned) and removes the canary the
// drains used.
func finishUpgrade(ctx context.Context, r *workflow.Run) error {
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	if err := recordUpgradedBundle(r); err != nil {
		return err
	}
	return withControlPlaneAPI(r, func(c *kube.Client) error {
		list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var errs []error
		for _, n := range list.Items {
			if n.Annotations[kube.CordonedBy] != upgradeCordon {
				continue
			}
			if _, err := c.Uncordon(ctx, n.Name); err != nil {
				errs = append(errs, fmt.Errorf("uncordon %s: %w", n.Name, err))
				continue
			}
			r.Changed(n.Name, "uncordoned (left cordoned by an upgrade that stopped)")
		}
		return errors.Join(append(errs, removeCanary(ctx, c))...)
	})
}

// planOn plans the upgrade to spec.kubernetesVersion from what the connected hosts (in cluster.yaml's order)
// run, with the bundle of cluster.yaml.
// recordUpgradedBundle records the bundle an upgrade moved the cluster to, once every host runs it.
func recordUpgradedBundle(r *workflow.Run) error {
	c := r.Cluster
	m, err := verifiedManifest(c.Spec.Bundle.Path, filepath.Join(c.Spec.StateDir, "bundle"), c.Spec.Bundle.PublicKeys...)
	if err != nil {
		return err
	}
	return recordAppliedBundle(c.Spec.StateDir, m)
}

func planOn(ctx context.Context, c *api.Cluster, hosts []ssh.Host, batchPercent int) (upgrade.Plan, error) {
	m, err := verifiedManifest(c.Spec.Bundle.Path, filepath.Join(c.Spec.StateDir, "bundle"), c.Spec.Bundle.PublicKeys...)
	if err != nil {
		return upgrade.Plan{}, err
	}
	installed := make([]upgrade.Installed, len(hosts))
	errs := parallel.ForEach(ctx, len(hosts), c.Spec.SSH.Concurrency, func(i int) error {
		var err error
		if installed[i], err = installedVersions(ctx, hosts[i]); err != nil {
			return fmt.Errorf("%s: %w", c.Spec.Hosts[i].Name, err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return upgrade.Plan{}, err
	}
	byHost := map[string]upgrade.Installed{}
	for i, h := range c.Spec.Hosts {
		byHost[h.Name] = installed[i]
	}
	p := upgrade.Make(c, byHost, m, batchPercent)
	applied, err := appliedBundle(c.Spec.StateDir)
	if err != nil {
		return upgrade.Plan{}, err
	}
	if applied != nil {
		p.BundleFrom = applied.Name
		p.BundleChanges = bundle.Diff(applied, m)
	}
	return p, nil
}
