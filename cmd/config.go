package cmd

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/report"
)

func newConfigCommand(g *globalOptions) *cobra.Command {
	c := group("config", "Validate cluster.yaml, print its defaults or its JSON Schema")
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check cluster.yaml and list every problem with its field and line",
		Args:  noArgs,
		RunE:  func(*cobra.Command, []string) error { return g.validateConfig() },
	}
	g.addConfigFlag(validate)
	g.addOutputFlag(validate)
	c.AddCommand(validate,
		&cobra.Command{
			Use:   "print-defaults",
			Short: "Print a complete, commented cluster.yaml with every default",
			Args:  noArgs,
			RunE: func(*cobra.Command, []string) error {
				_, err := fmt.Fprint(g.streams.Out, api.CommentedYAML(api.Example()))
				return err
			},
		},
		&cobra.Command{
			Use:   "schema",
			Short: "Print the JSON Schema of cluster.yaml, for editors and linters",
			Args:  noArgs,
			RunE: func(*cobra.Command, []string) error {
				s, err := api.JSONSchema()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.streams.Out, "%s\n", s)
				return err
			},
		},
	)
	return c
}

// validationResult is `config validate -o json`.
type validationResult struct {
	File   string           `json:"file"`
	Valid  bool             `json:"valid"`
	Errors []validationItem `json:"errors,omitempty"`
	Hosts  map[string]int   `json:"hosts,omitempty"`
}

type validationItem struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (g *globalOptions) validateConfig() error {
	c, err := g.loadCluster()
	res := validationResult{File: g.configPath, Valid: err == nil}
	var ve *api.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			res.Errors = append(res.Errors, validationItem{Path: fe.Path, Line: fe.Line, Message: fe.Msg})
		}
	} else if err != nil {
		return err
	}
	if c != nil {
		res.Hosts = map[string]int{"total": len(c.Spec.Hosts)}
		for _, r := range api.Roles {
			res.Hosts[string(r)] = len(c.Spec.HostsWithRole(r))
		}
	}
	if g.format == report.JSON {
		out, _ := json.Marshal(res)
		fmt.Fprintf(g.streams.Out, "%s\n", out)
		if err != nil {
			return &silentError{err}
		}
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.streams.Out, "%s: valid: %d hosts (%d control-plane, %d etcd, %d worker), Kubernetes %s\n",
		g.configPath, res.Hosts["total"], res.Hosts["control-plane"], res.Hosts["etcd"], res.Hosts["worker"],
		c.Spec.KubernetesVersion)
	return nil
}
