package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/addons"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
)

func newAddonsCommand(g *globalOptions) *cobra.Command {
	c := group("addons", "List, apply and check the cluster add-ons (CoreDNS, Kata RuntimeClass, Multus, Quay, monitoring)")
	c.AddCommand(newAddonsListCommand(g), newAddonsApplyCommand(g), newAddonsStatusCommand(g))
	return c
}

func newAddonsListCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "Show every add-on, whether cluster.yaml enables it and whether the bundle has its images",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			cluster, err := g.loadCluster()
			if err != nil {
				return err
			}
			r, err := bundle.Open(cluster.Spec.Bundle.Path)
			if err != nil {
				return fmt.Errorf("spec.bundle.path: %w", err)
			}
			defer r.Close()
			type row struct {
				Addon    string   `json:"addon"`
				Enabled  bool     `json:"enabled"`
				Disabled string   `json:"disabled,omitempty"`
				Images   []string `json:"images"`
				Missing  []string `json:"missingImages,omitempty"`
			}
			var rows []row
			for _, a := range addons.All() {
				d := a.Disabled(&cluster.Spec)
				rows = append(rows, row{Addon: a.Name, Enabled: d == "", Disabled: d, Images: a.Images(&cluster.Spec),
					Missing: a.MissingImages(&cluster.Spec, r.Manifest)})
			}
			if g.format == report.JSON {
				g.writeJSON(rows)
				return nil
			}
			w := g.streams.Out
			fmt.Fprintf(w, "%-8s %-8s %s\n", "ADDON", "ENABLED", "IMAGES")
			for _, r := range rows {
				images := "in the bundle"
				if len(r.Images) == 0 {
					images = "none needed"
				}
				if len(r.Missing) > 0 {
					images = "MISSING: " + strings.Join(r.Missing, "; ")
				}
				enabled := "yes"
				if !r.Enabled {
					enabled = "no"
				}
				fmt.Fprintf(w, "%-8s %-8s %s\n", r.Addon, enabled, images)
			}
			return nil
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	return c
}

func newAddonsApplyCommand(g *globalOptions) *cobra.Command {
	addonOpts := &phases.AddonOptions{}
	wf := phases.Addons(addonOpts)
	sel := &selectionFlags{}
	c := &cobra.Command{
		Use:   "apply [ADDON...]",
		Short: "Apply the enabled add-ons (or the named ones) with server-side apply and wait until they are ready",
		Long: `Render the add-ons from cluster.yaml and the bundle, apply them with server-side apply through a
control-plane host's SSH connection, and wait until their workloads are rolled out. Re-applying changes
nothing. --server-dry-run has the API server validate and admit every object without storing any; an add-on
whose images the bundle lacks is dry-run that way and then fails, naming the missing images.`,
		ValidArgs: addonNames(),
		Args:      cobra.OnlyValidArgs,
		RunE: func(c *cobra.Command, args []string) error {
			sel := workflow.Selection{Only: sel.only, Skip: sel.skip, From: sel.from}
			for _, a := range args {
				sel.Only = append(sel.Only, "addons/"+a)
			}
			return g.runWorkflow(c, wf, sel)
		},
	}
	g.addWorkflowFlags(c)
	c.Flags().BoolVar(&addonOpts.ServerDryRun, "server-dry-run", false, "have the API server check every object without storing it")
	sel.addFlags(c)
	return c
}

func newAddonsStatusCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "Show whether each add-on's objects exist in the cluster and are ready",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, d, err := g.loadClusterAndDialer()
			if err != nil {
				return err
			}
			st, err := phases.AddonsStatus(c.Context(), cluster, connectWith(d))
			if err != nil {
				return err
			}
			if g.format == report.JSON {
				g.writeJSON(st)
			} else {
				g.printAddonStatus(st)
			}
			var notReady []string
			for _, s := range st {
				if s.Disabled == "" && !s.Ready {
					notReady = append(notReady, s.Addon)
				}
			}
			if len(notReady) > 0 {
				return &notReadyError{addons: notReady}
			}
			return nil
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	return c
}

func (g *globalOptions) printAddonStatus(st []phases.AddonStatus) {
	w := g.streams.Out
	for _, s := range st {
		switch {
		case s.Disabled != "":
			fmt.Fprintf(w, "%-10s disabled (%s)\n", s.Addon, s.Disabled)
			continue
		case s.Ready:
			fmt.Fprintf(w, "%-10s ready\n", s.Addon)
		default:
			fmt.Fprintf(w, "%-10s NOT READY\n", s.Addon)
		}
		for _, m := range s.Missing {
			fmt.Fprintf(w, "  image missing: %s\n", m)
		}
		for _, o := range s.Objects {
			line := fmt.Sprintf("  %-11s %s", o.State, o.Object)
			if o.Detail != "" {
				line += ": " + o.Detail
			}
			fmt.Fprintln(w, line)
		}
	}
}

func addonNames() []string {
	var out []string
	for _, a := range addons.All() {
		out = append(out, a.Name)
	}
	return out
}

// notReadyError is an add-on status check that found enabled add-ons not ready.
type notReadyError struct{ addons []string }

func (e *notReadyError) Error() string {
	return "add-ons not ready: " + strings.Join(e.addons, ", ")
}

func (e *notReadyError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }
