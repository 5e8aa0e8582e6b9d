package cmd

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostlock"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// workflowCommand describes a command that runs a workflow.
type workflowCommand struct {
	workflow func() workflow.Workflow
	// install, when set, builds the workflow with init's and join's options, which get their flags
	install func(*phases.InstallOptions) workflow.Workflow
	use     string
	short   string
	long    string
}

var (
	initWorkflow = workflowCommand{workflow: phases.Init, install: phases.InitWith, use: "init",
		short: "Bring up a new cluster from cluster.yaml",
		long: `Bring up a new cluster: every phase below runs in order over SSH. Each phase is idempotent: re-running
init on a converged cluster changes nothing. After a failure, fix the cause and re-run, or resume with --from.`}
	joinWorkflow = workflowCommand{workflow: phases.Join, install: phases.JoinWith, use: "join",
		short: "Add the hosts of cluster.yaml that are not yet part of the cluster",
		long: `Add every host listed in cluster.yaml that is not yet a member: workers, and control-plane hosts with their
etcd member (added through the etcd API first, so quorum is never at risk).`}
	resetWorkflow = workflowCommand{workflow: phases.Reset, use: "reset",
		short: "Return hosts to their state before privcloud",
		long: `Return hosts to their pre-install state: nodes are drained, a control plane's API server stops and its etcd
member leaves the cluster, then services, files, CNI configuration, iptables rules and mounts are removed. Safe
to re-run.`}
)

type selectionFlags struct {
	only, skip []string
	from       string
}

func (sel *selectionFlags) addFlags(c *cobra.Command) {
	c.Flags().StringSliceVar(&sel.only, "only", nil, "run only these phases (paths, comma-separated; a group runs all its phases)")
	c.Flags().StringSliceVar(&sel.skip, "skip", nil, "skip these phases")
	c.Flags().StringVar(&sel.from, "from", "", "start at this phase, e.g. to resume after a failure")
}

func newWorkflowCommand(g *globalOptions, wc workflowCommand) *cobra.Command {
	wf := wc.workflow()
	install := &phases.InstallOptions{}
	if wc.install != nil {
		wf = wc.install(install)
	}
	sel := &selectionFlags{}
	c := &cobra.Command{
		Use:   wc.use,
		Short: wc.short,
		Long:  wc.long + "\n\nPhases (address them with --only, --skip, --from or '" + wf.CommandName() + " phase PATH'):\n" + phaseTree(wf),
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.runWorkflow(c, wf, workflow.Selection{Only: sel.only, Skip: sel.skip, From: sel.from})
		},
	}
	g.addWorkflowFlags(c)
	if wc.use == "init" {
		c.Flags().StringVar(&install.KubeconfigOut, "kubeconfig-out", "", "where to write the admin kubeconfig (0600); default: kubeconfig next to cluster.yaml")
	}
	if wc.install != nil {
		c.Flags().BoolVar(&install.ReplacePKI, "replace-pki", false, "send the state directory's PKI to hosts that trust another CA, replacing their cluster identity (only for hosts rebuilt on purpose: every node must then trust the new CA)")
	}
	if wc.use == "reset" {
		c.Flags().StringSliceVar(&g.scopeHosts, "hosts", nil, "reset only these hosts (comma-separated names); the others keep running. Default: every host")
	}
	sel.addFlags(c)
	c.AddCommand(newPhaseCommand(g, wf))
	return c
}

// newPhaseCommand generates '<workflow> phase PATH' for every phase path of the workflow.
func newPhaseCommand(g *globalOptions, wf workflow.Workflow) *cobra.Command {
	p := group("phase", "Run one phase of "+wf.CommandName()+" (a group runs all its phases)")
	p.Long = "Run one phase of " + wf.CommandName() + " on its own. Phases:\n" + phaseTree(wf)
	for _, s := range wf.Paths() {
		path := s.Path
		c := &cobra.Command{
			Use:   path,
			Short: s.Phase.Short,
			Args:  noArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return g.runWorkflow(c, wf, workflow.Selection{Only: []string{path}})
			},
		}
		g.addWorkflowFlags(c)
		p.AddCommand(c)
	}
	return p
}

func (g *globalOptions) addWorkflowFlags(c *cobra.Command) {
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addDryRunFlag(c)
	g.addConnectFlags(c)
}

func (g *globalOptions) runWorkflow(c *cobra.Command, wf workflow.Workflow, sel workflow.Selection) error {
	cluster, err := g.loadCluster()
	if err != nil {
		return err
	}
	return g.runConnected(c, cluster, wf, sel)
}

// runConnected runs a workflow on a loaded cluster with the SSH dialer its hosts need.
func (g *globalOptions) runConnected(c *cobra.Command, cluster *api.Cluster, wf workflow.Workflow, sel workflow.Selection) error {
	for _, h := range g.scopeHosts {
		if !slices.ContainsFunc(cluster.Spec.Hosts, func(s api.Host) bool { return s.Name == h }) {
			return asUsageError(fmt.Errorf("--hosts: %q is not a host of %s", h, g.configPath))
		}
	}
	d, err := g.dialer(cluster)
	if err != nil {
		return err
	}
	owner := ownerOf(wf)
	wf.Command = g.resumeCommand(wf)
	return phases.Execute(c.Context(), wf, cluster, phases.Execution{DryRun: g.dryRun, Selection: sel, Reporter: g.reporter(), Hosts: g.scopeHosts,
		Connect: connectWith(d), Owner: owner})
}

// ownerOf describes this process as the holder of the hosts' locks while it runs wf.
func ownerOf(wf workflow.Workflow) *hostlock.Owner {
	o := hostlock.Self(wf.CommandName())
	return &o
}

// connectWith adapts the SSH dialer to the phases' connect function.
func connectWith(d *ssh.Dialer) func(context.Context, api.Host) (ssh.Host, error) {
	return func(ctx context.Context, h api.Host) (ssh.Host, error) { return d.Connect(ctx, h) }
}

// phaseTree renders the workflow's phases indented by depth, in the order they run.
func phaseTree(wf workflow.Workflow) string {
	var b strings.Builder
	for _, s := range wf.Paths() {
		depth := strings.Count(s.Path, "/")
		fmt.Fprintf(&b, "  %s%-*s %s\n", strings.Repeat("  ", depth), 34-2*depth, s.Path, s.Phase.Short)
	}
	return b.String()
}

func newUpgradeCommand(g *globalOptions) *cobra.Command {
	c := group("upgrade", "Plan and apply a Kubernetes upgrade")
	batch := 10
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show what an upgrade to spec.kubernetesVersion would do, or why it is refused",
		Long: `Read the version of every component on every host and show what an upgrade to spec.kubernetesVersion with
the bundle would change, and in which order: etcd members and control planes one at a time, then workers in
batches. Exits 5 with the reasons when the upgrade is refused: a minor version skipped, a downgrade, a kubelet
newer than the API servers or too old for the target, an etcd version jump etcd does not support, or a binary
the bundle lacks. Nothing is changed.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, d, err := g.loadClusterAndDialer()
			if err != nil {
				return err
			}
			p, err := phases.UpgradePlan(c.Context(), cluster, connectWith(d), batch)
			if err != nil {
				return err
			}
			if g.format == report.JSON {
				g.writeJSON(p)
			} else {
				g.printUpgradePlan(p)
			}
			return p.Refused()
		},
	}
	g.addConfigFlag(plan)
	g.addOutputFlag(plan)
	g.addConnectFlags(plan)
	plan.Flags().IntVar(&batch, "worker-batch-percent", 10, "workers upgraded together, as a percentage of them (at least one)")
	opts := &phases.UpgradeOptions{ConfigPath: func() string { return g.configPath }, WorkerBatchPercent: 10}
	apply := newWorkflowCommand(g, workflowCommand{workflow: func() workflow.Workflow { return phases.Upgrade(opts) }, use: "apply",
		short: "Upgrade the cluster to spec.kubernetesVersion",
		long: `Upgrade to spec.kubernetesVersion, in the order 'privcloud upgrade plan' shows: the plan is checked first (a
refused plan changes nothing), an etcd snapshot is saved with the PKI and cluster.yaml (backups/ in the state
directory), the new binaries are sent beside the running ones, then etcd members and control planes go one host
at a time and workers in batches. On each host every service is switched to its new binary (an atomic link
switch), restarted and gated: it must run the new binary, keep running and pass its health check (etcd /health,
kube-apiserver /readyz, the controller-manager's and scheduler's /healthz, the node Ready with the new kubelet
version, kube-proxy /healthz). Nodes are cordoned and drained (PodDisruptionBudgets are honoured) before their
kubelet is switched, and uncordoned after. A service that fails its gate is switched back to its previous
version at once and the run stops with a report; re-running continues where it stopped, and a finished upgrade
re-run changes nothing.`})
	apply.Flags().IntVar(&opts.WorkerBatchPercent, "worker-batch-percent", 10, "workers upgraded together, as a percentage of them (at least one)")
	c.AddCommand(plan, apply)
	return c
}

func (g *globalOptions) printUpgradePlan(p upgrade.Plan) {
	w := g.streams.Out
	if p.UpToDate() {
		fmt.Fprintf(w, "every host runs %s: nothing to upgrade\n", p.To)
	} else {
		fmt.Fprintf(w, "upgrade %s -> %s\n\n%-12s %-24s %-24s %-10s %s\n", p.From, p.To, "HOST", "ROLES", "COMPONENT", "FROM", "TO")
		for _, h := range p.Hosts {
			for _, ch := range h.Changes {
				from := ch.From
				if from == "" {
					from = "-"
				}
				fmt.Fprintf(w, "%-12s %-24s %-24s %-10s %s\n", h.Host, strings.Join(h.Roles, ","), ch.Component, from, ch.To)
			}
		}
		var order []string
		for _, b := range p.Batches {
			order = append(order, strings.Join(b, " "))
		}
		fmt.Fprintf(w, "\norder: %s\n", strings.Join(order, "; then "))
	}
	if p.BundleFrom != "" && len(p.BundleChanges) > 0 {
		fmt.Fprintf(w, "\nthe bundle, against %s (the last one the cluster ran):\n", p.BundleFrom)
		g.printBundleDiff(p.BundleChanges)
	}
	if len(p.Refusals) > 0 {
		fmt.Fprintf(w, "\nrefused:\n")
		for _, r := range p.Refusals {
			fmt.Fprintf(w, "  - %s\n", r)
		}
	}
}

// resumeCommand is the command line a failure's hint names: the workflow's command with this run's
// cluster.yaml and --hosts, so that resuming acts on the same cluster and the same hosts (a reset of one host
// resumed without --hosts would reset them all).
func (g *globalOptions) resumeCommand(wf workflow.Workflow) string {
	cmd := wf.CommandName()
	if g.configPath != "cluster.yaml" {
		cmd += " -f " + ssh.ShellQuote(g.configPath)
	}
	if len(g.scopeHosts) > 0 {
		cmd += " --hosts " + ssh.ShellQuote(strings.Join(g.scopeHosts, ","))
	}
	return cmd
}
