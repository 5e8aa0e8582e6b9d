package cmd

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
)

func newBackupCommand(g *globalOptions) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "backup",
		Short: "Save an etcd snapshot, the PKI and cluster.yaml in one file",
		Long: `Take an etcd snapshot through a running member and save it, with the state directory's PKI, kubeconfigs and
generated credentials and cluster.yaml, in one file (tar + zstd, 0600: it holds the CA keys). 'privcloud
restore FILE' brings the cluster back from it and needs nothing else.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			if out == "" {
				out = phases.DefaultBackupPath(cluster.Spec.StateDir, cluster.Metadata.Name, time.Now())
			}
			return g.runConnected(c, cluster, phases.Backup(g.configPath, out), workflow.Selection{})
		},
	}
	g.addWorkflowFlags(c)
	c.Flags().StringVar(&out, "out", "", "backup file to write; default: backups/CLUSTER-TIME.tar.zst in the state directory")
	return c
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	sel := &selectionFlags{}
	c := &cobra.Command{
		Use:   "restore FILE",
		Short: "Bring a cluster back from a backup",
		Long: `Bring the cluster of cluster.yaml back to the moment of a backup: the backup is checked (every sha256, and its
CAs must be the state directory's, or the state directory must have none), the API servers and every etcd
member stop, each member's data directory is made anew from the snapshot (the old one is kept aside as
DATADIR.before-restore-TIME), and the members start together, then the control plane. Works the same for 1
and 3 members. Objects created after the backup are gone afterwards.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			wf, cleanup := phases.Restore(args[0])
			defer cleanup()
			return g.runConnected(c, cluster, wf, workflow.Selection{Only: sel.only, Skip: sel.skip, From: sel.from})
		},
	}
	g.addWorkflowFlags(c)
	sel.addFlags(c)
	return c
}
