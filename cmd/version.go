package cmd

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/internal/version"
	"github.com/privcloud/privcloud/report"
)

func newVersionCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "version",
		Short: "Print privcloud's version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			v := version.Get()
			if g.format == report.JSON {
				out, _ := json.Marshal(v)
				_, err := fmt.Fprintf(g.streams.Out, "%s\n", out)
				return err
			}
			_, err := fmt.Fprintf(g.streams.Out, "privcloud %s (commit %s, built %s, %s, %s)\nconfig API %s, default Kubernetes %s\n",
				v.Version, orUnknown(v.Commit), orUnknown(v.Date), v.GoVersion, v.Platform, v.APIVersion, v.DefaultKubernetesVersion)
			return err
		},
	}
	g.addOutputFlag(c)
	return c
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
