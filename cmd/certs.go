package cmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/report"
)

func newCertsCommand(g *globalOptions) *cobra.Command {
	c := group("certs", "Generate, check and renew the cluster certificates")
	c.AddCommand(newCertsGenerateCommand(g), newCertsCheckCommand(g), newCertsRenewCommand(g), newCertsRotateCACommand(g))
	return c
}

func newCertsGenerateCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "generate",
		Short: "Write the whole PKI to the local state directory only (for review, or to sign offline)",
		Long: `Create or reuse every CA, certificate, key and kubeconfig of the cluster in spec.stateDir, without touching
any host. Valid files are kept; files that no longer match cluster.yaml (a new host, a new SAN, another key
algorithm) or expire within spec.pki.renewBefore are reissued, and the output says why. With spec.pki.externalCA, nothing is signed: the command
checks the files you provide and lists what is missing.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			res, err := phases.EnsurePKI(cluster, pki.Options{DryRun: g.dryRun})
			if err != nil {
				return err
			}
			if g.format == report.JSON {
				g.writeJSON(map[string]any{"dir": cluster.Spec.StateDir, "dryRun": g.dryRun, "entries": res.Outcomes})
				return nil
			}
			w := g.streams.Out
			fmt.Fprintf(w, "%-32s %-9s %-12s %s\n", "NAME", "ACTION", "EXPIRES", "REASON")
			for _, o := range res.Outcomes {
				expires := "-"
				if !o.NotAfter.IsZero() {
					expires = o.NotAfter.Format(time.DateOnly)
				}
				fmt.Fprintf(w, "%-32s %-9s %-12s %s\n", o.Name, o.Action, expires, o.Reason)
			}
			verb := "wrote"
			if g.dryRun {
				verb = "would write"
			}
			fmt.Fprintf(w, "%s %d of %d entries in %s\n", verb, res.Changed(), len(res.Outcomes), cluster.Spec.StateDir)
			return nil
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addDryRunFlag(c)
	return c
}

// loadTree loads cluster.yaml and declares its certificate tree.
func (g *globalOptions) loadTree() (*api.Cluster, *pki.Tree, error) {
	cluster, err := g.loadCluster()
	if err != nil {
		return nil, nil, err
	}
	tree, err := pki.TreeFor(cluster)
	return cluster, tree, err
}

// expiryRow is one line of check-expiration: a local entry (no host, no path), or a file deployed on a host.
type expiryRow = phases.HostExpiry

func newCertsCheckCommand(g *globalOptions) *cobra.Command {
	var remote bool
	c := &cobra.Command{
		Use:   "check-expiration",
		Short: "List every certificate and kubeconfig with its expiry",
		Long: `List every CA, certificate and kubeconfig with its expiry date and remaining time, from the local state
directory, or with --remote from what is actually deployed on each host (read over SSH), and from when privcloud
runs renew it (spec.pki.renewBefore ahead of its end; any init, join or certs renew from that day on does). Exits 5
when anything is expired or missing.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, tree, err := g.loadTree()
			if err != nil {
				return err
			}
			var rows []expiryRow
			if remote {
				d, err := g.dialer(cluster)
				if err != nil {
					return err
				}
				if rows, err = phases.DeployedExpiry(c.Context(), d, cluster, tree); err != nil {
					return err
				}
			} else {
				for _, e := range pki.CheckExpiration(phases.PKIStore(cluster), tree, time.Now()) {
					rows = append(rows, expiryRow{Expiry: e})
				}
			}
			for i, r := range rows {
				if r.Kind != "ca" && !r.External && !r.NotAfter.IsZero() {
					rows[i].RenewFrom = r.NotAfter.Add(-cluster.Spec.PKI.RenewBefore.Duration)
				}
			}
			g.printExpiry(rows, remote)
			var bad []string
			for _, r := range rows {
				if r.Problem != "" {
					bad = append(bad, strings.TrimSpace(r.Host+" "+r.Name)+": "+r.Problem)
				}
			}
			if len(bad) > 0 {
				err := &certProblemsError{problems: bad}
				if g.format == report.JSON {
					return &silentError{err}
				}
				return err
			}
			return nil
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	c.Flags().BoolVar(&remote, "remote", false, "read the certificates deployed on the hosts instead of the local store")
	return c
}

// certProblemsError is a check that found expired or missing certificates.
type certProblemsError struct{ problems []string }

func (e *certProblemsError) Error() string {
	return fmt.Sprintf("%d certificate(s) need attention:\n  %s", len(e.problems), strings.Join(e.problems, "\n  "))
}

func (e *certProblemsError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }

func (g *globalOptions) printExpiry(rows []expiryRow, remote bool) {
	if g.format == report.JSON {
		g.writeJSON(map[string]any{"certificates": rows})
		return
	}
	w := g.streams.Out
	if remote {
		fmt.Fprintf(w, "%-10s ", "HOST")
	}
	fmt.Fprintf(w, "%-32s %-11s %-14s %-12s %-10s %-12s %s\n", "NAME", "KIND", "CA", "EXPIRES", "RESIDUAL", "RENEWS FROM", "PROBLEM")
	for _, r := range rows {
		if remote {
			fmt.Fprintf(w, "%-10s ", r.Host)
		}
		expires := "-"
		if !r.NotAfter.IsZero() {
			expires = r.NotAfter.Format(time.DateOnly)
		}
		ca := r.CA
		if r.External {
			ca += " (external)"
		}
		renews := "-"
		if !r.RenewFrom.IsZero() {
			renews = r.RenewFrom.Format(time.DateOnly)
		}
		fmt.Fprintf(w, "%-32s %-11s %-14s %-12s %-10s %-12s %s\n", r.Name, r.Kind, orDash(ca), expires, orDash(r.ExpiresIn), renews, r.Problem)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newCertsRenewCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "renew all|NAME...",
		Short: "Renew certificates, send them to the hosts that use them and restart what reads them",
		Long: `Reissue the named certificates and kubeconfigs (names as 'certs check-expiration' lists them; 'all' for
every one but the CAs and the service-account key; a folder such as 'apiserver' for all of its entries), send the new files to the hosts that use them and
restart the installed services that read a changed file.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cluster, tree, err := g.loadTree()
			if err != nil {
				return err
			}
			if err := tree.CheckRenewable(args); err != nil {
				return asUsageError(err)
			}
			return g.runConnected(c, cluster, phases.RenewCerts(args), workflow.Selection{})
		},
	}
	g.addWorkflowFlags(c)
	return c
}

func newKubeconfigCommand(g *globalOptions) *cobra.Command {
	var out string
	var superAdmin bool
	c := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print or write the cluster's admin kubeconfig",
		Long: `Print the admin kubeconfig from the local state directory, or write it to --out (mode 0600). Its user is in
the privcloud:cluster-admins group, bound to cluster-admin. With several control planes it has a context per
control plane besides the control-plane endpoint's; when the endpoint is the first control plane (the default)
and it does not answer, the first one that does becomes the current context. --super-admin gives the break-glass credential
in system:masters instead, which no RBAC binding can take away: keep it offline.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			name := "admin"
			if superAdmin {
				name = "super-admin"
			}
			path := phases.PKIStore(cluster).KubeconfigPath(name)
			data, current, err := phases.AdminKubeconfig(cmd.Context(), cluster, name)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s does not exist yet: run 'privcloud certs generate' or 'privcloud init' first", path)
			}
			if err != nil {
				return err
			}
			if current != "" {
				fmt.Fprintf(g.streams.Err, "the control-plane endpoint %s does not answer: the current context is %s's\n", cluster.Spec.ControlPlaneEndpoint, current)
			}
			if out == "" {
				_, err = g.streams.Out.Write(data)
				return err
			}
			return atomicfile.Write(out, data, 0o600)
		},
	}
	g.addConfigFlag(c)
	c.Flags().StringVar(&out, "out", "", "write to this file (0600) instead of standard output")
	c.Flags().BoolVar(&superAdmin, "super-admin", false, "the system:masters credential instead of the admin one")
	return c
}

func newCertsRotateCACommand(g *globalOptions) *cobra.Command {
	sel := &selectionFlags{}
	tokenWait := phases.DefaultTokenWait
	c := &cobra.Command{
		Use:   "rotate-ca",
		Short: "Replace the cluster, front-proxy and etcd CAs and the service-account key of a running cluster, in stages that never break trust",
		Long: `Replace the cluster's CAs (cluster, front-proxy, etcd) and its service-account signing key in three stages,
each of which sends every host its changed files and restarts what reads them in turns behind health gates
(control planes one at a time, nodes in batches), as a reconfiguration does:

  trust   a new CA beside each old one: every host trusts both, and the API servers accept tokens of a new
          service-account key beside the old; the run then waits until every namespace's kube-root-ca.crt
          carries the new cluster CA and kubelets have refreshed running pods' copies, and restarts CoreDNS and
          Multus, which load their CA when they start
  switch  the new CAs and key sign: every certificate and kubeconfig is reissued from them (certificate keys
          are kept); CoreDNS and Multus restart again, for tokens of the new key
  retire  kubelets whose own renewed client certificate the old CA signed are restarted, in turns, on the one
          privcloud sent; the controller-managers restart, in turns, for tokens of the new key; the run waits
          (--token-wait) until no running pod holds a token of the old key, which kubelets replace within the
          hour; then the old CAs and key are trusted no more

The stage reached is recorded in the state directory (pki/ca-rotation.json): a run that stops is resumed by
running the command again. Workloads of your own that reach the API from pods load the CA when they start:
run with --only start,trust, restart them, then run again; restarting them after the switch
(--only start,switch) also ends the wait for their tokens. The admin kubeconfig is rewritten after each stage.
Take a backup after it: the old backups hold the old CAs.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			if tokenWait < 0 {
				return &usageError{errors.New("--token-wait must not be negative")}
			}
			return g.runConnected(c, cluster, phases.RotateCA(tokenWait), workflow.Selection{Only: sel.only, Skip: sel.skip, From: sel.from})
		},
	}
	c.Flags().DurationVar(&tokenWait, "token-wait", tokenWait, "how long the retire stage waits for running pods' tokens of the old service-account key to be replaced")
	g.addWorkflowFlags(c)
	sel.addFlags(c)
	return c
}
