package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/phases/workflow"
)

// Commands whose capability is not built yet. They exist so the command tree, its flags and its help are
// stable for scripts, and they fail with ExitNotImplemented: never a pretend success.

func notImplemented(what string) func(*cobra.Command, []string) error {
	return func(*cobra.Command, []string) error {
		return fmt.Errorf("%w: %s", workflow.ErrNotImplemented, what)
	}
}

func (g *globalOptions) pending(use, short, what string, args cobra.PositionalArgs) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short + " (not implemented yet)", Args: args, RunE: notImplemented(what)}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	return c
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	return g.pending("backup", "Save an etcd snapshot, the PKI and cluster.yaml in one file", "backups come with upgrade and restore", noArgs)
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	return g.pending("restore FILE", "Bring a cluster back from a backup", "restore comes with upgrade and restore", cobra.ExactArgs(1))
}
