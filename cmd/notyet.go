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
