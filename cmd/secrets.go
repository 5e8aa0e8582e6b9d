package cmd

import (
	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
)

func newSecretsCommand(g *globalOptions) *cobra.Command {
	c := group("secrets", "Manage how Secrets are kept in etcd")
	sel := &selectionFlags{}
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Replace the key Secrets are encrypted with in etcd, in stages, without an API server ever unable to read one",
		Long: `Replace the secretbox key of the API servers' EncryptionConfiguration (spec.apiServer.encryptSecrets) in four
stages: add (every API server trusts the new key, listed second), primary (every API server encrypts with it and
still reads the old), rewrite (every Secret is written again, so etcd holds it under the new key), retire (the
old key is removed). Stages add, primary and retire send the configuration to the control planes and restart
their API servers one at a time, each gated on /readyz. The stage reached is recorded in the state directory
(pki/encryption-rotation.json): a run that stops is resumed by running the command again. Take a backup after
it: the old backups hold the old key.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			return g.runConnected(c, cluster, phases.RotateEncryptionKey(), workflow.Selection{Only: sel.only, Skip: sel.skip, From: sel.from})
		},
	}
	g.addWorkflowFlags(rotate)
	sel.addFlags(rotate)
	c.AddCommand(rotate)
	return c
}
