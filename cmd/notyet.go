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

func newBundleCommand(g *globalOptions) *cobra.Command {
	c := group("bundle", "Build, verify, inspect and sign the air-gap bundle")
	what := "bundles come with the air-gap bundle"
	build := &cobra.Command{Use: "build", Short: "Build a bundle from bundle.yaml (not implemented yet)", Args: noArgs, RunE: notImplemented(what)}
	build.Flags().StringP("file", "f", "bundle.yaml", "bundle description")
	build.Flags().StringP("output", "o", "privcloud-bundle.tar.zst", "bundle file to write")
	inspect := &cobra.Command{Use: "inspect FILE", Short: "List a bundle's contents (not implemented yet)", Args: cobra.ExactArgs(1), RunE: notImplemented(what)}
	g.addOutputFlag(inspect)
	c.AddCommand(build, inspect,
		&cobra.Command{Use: "verify FILE", Short: "Check every checksum and the signature of a bundle (not implemented yet)", Args: cobra.ExactArgs(1), RunE: notImplemented(what)},
		&cobra.Command{Use: "sign FILE", Short: "Sign a bundle with an ed25519 key (not implemented yet)", Args: cobra.ExactArgs(1), RunE: notImplemented(what)},
	)
	return c
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	return g.pending("backup", "Save an etcd snapshot, the PKI and cluster.yaml in one file", "backups come with upgrade and restore", noArgs)
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	return g.pending("restore FILE", "Bring a cluster back from a backup", "restore comes with upgrade and restore", cobra.ExactArgs(1))
}
