// Package cmd holds privcloud's cobra commands: flags and their PRIVCLOUD_* environment variables, turned into
// options and handed to the packages that do the work. Exit codes are mapped here, in one place.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"golang.org/x/term"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/secret"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

// EnvPrefix prefixes the environment variable of every flag: --dry-run is PRIVCLOUD_DRY_RUN.
const EnvPrefix = "PRIVCLOUD"

// Streams are the process's standard streams, injected so tests capture them.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	streams    Streams
	configPath string
	dryRun     bool
	output     string
	verbose    int
	acceptNew  bool
	// scopeHosts is reset's --hosts.
	scopeHosts []string

	format report.Format
	// started is set once flags parsed and the command began; an error before it is a usage error.
	started bool
}

// Execute runs privcloud with args and returns the process exit code.
func Execute(ctx context.Context, args []string, s Streams) int {
	root, g := newRoot(s)
	root.SetArgs(args)
	ran, err := root.ExecuteContextC(ctx)
	if err != nil && !g.started {
		err = asUsageError(err)
	}
	code := ExitCode(err)
	if err != nil {
		g.reportError(ran, err, code)
	}
	return code
}

// NewRootCommand returns the privcloud command tree.
func NewRootCommand(s Streams) *cobra.Command {
	root, _ := newRoot(s)
	return root
}

func newRoot(s Streams) (*cobra.Command, *globalOptions) {
	g := &globalOptions{streams: s, format: report.Text, output: string(report.Text)}
	root := &cobra.Command{
		Use:   "privcloud",
		Short: "Install and run Kubernetes on your own machines from one cluster.yaml",
		Long: `privcloud turns one declarative cluster.yaml into ordered, idempotent phases run over SSH:
containerd (with Kata Containers as a runtime class), the cluster PKI, etcd, the control plane, the nodes,
the pod network and the add-ons (CoreDNS, Multus, Quay, monitoring with the Prometheus Operator). Everything
comes from a verified air-gap bundle.

Every flag can also be set through an environment variable: --dry-run is PRIVCLOUD_DRY_RUN,
--config is PRIVCLOUD_CONFIG. A flag on the command line wins over its variable.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			return g.complete(c)
		},
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsageError(err) })

	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "more detail: -v adds phase starts and file diffs")

	root.AddCommand(
		newWorkflowCommand(g, initWorkflow),
		newWorkflowCommand(g, joinWorkflow),
		newWorkflowCommand(g, resetWorkflow),
		newUpgradeCommand(g),
		newPreflightCommand(g),
		newStatusCommand(g),
		newExecCommand(g),
		newCopyCommand(g),
		newCertsCommand(g),
		newSecretsCommand(g),
		newBundleCommand(g),
		newConfigCommand(g),
		newKubeconfigCommand(g),
		newAddonsCommand(g),
		newBackupCommand(g),
		newRestoreCommand(g),
		newVersionCommand(g),
		newExitCodesTopic(),
	)
	return root, g
}

// complete applies PRIVCLOUD_* variables to flags not given on the command line and checks shared values.
func (g *globalOptions) complete(c *cobra.Command) error {
	if err := bindEnvironment(c.Flags()); err != nil {
		return err
	}
	f, err := report.ParseFormat(g.output)
	if err != nil {
		return asUsageError(fmt.Errorf("--output: %w", err))
	}
	g.format = f
	g.started = true
	return nil
}

// bindEnvironment sets every flag the command line left alone from its environment variable, through viper.
func bindEnvironment(flags *pflag.FlagSet) error {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || !v.IsSet(f.Name) {
			return
		}
		if serr := flags.Set(f.Name, v.GetString(f.Name)); serr != nil {
			err = asUsageError(fmt.Errorf("%s: %w", envName(f.Name), serr))
		}
	})
	return err
}

func envName(flag string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// The shared flags are added per command, where they mean something: `bundle build` uses -f and -o for its
// own input and output files.

func (g *globalOptions) addConfigFlag(c *cobra.Command) {
	c.Flags().StringVarP(&g.configPath, "config", "f", "cluster.yaml", "cluster configuration file")
}

func (g *globalOptions) addOutputFlag(c *cobra.Command) {
	c.Flags().StringVarP(&g.output, "output", "o", string(report.Text), "output format: text, or json (one event per line)")
}

func (g *globalOptions) addDryRunFlag(c *cobra.Command) {
	c.Flags().BoolVar(&g.dryRun, "dry-run", false, "show what would change, change nothing")
}

// addConnectFlags adds the flags of commands that connect to hosts.
func (g *globalOptions) addConnectFlags(c *cobra.Command) {
	c.Flags().BoolVar(&g.acceptNew, "accept-new-host-keys", false,
		"trust hosts never seen before and record their keys in the first known_hosts file (changed keys are always refused)")
}

// dialer builds the SSH dialer for a cluster from the operator's environment.
func (g *globalOptions) dialer(c *api.Cluster) (*ssh.Dialer, error) {
	d, err := ssh.NewDialer(c, ssh.Environment{Getenv: os.Getenv, Prompt: g.prompt(), AcceptNewHostKeys: g.acceptNew})
	if err != nil {
		return nil, &configError{err: err, path: g.configPath}
	}
	return d, nil
}

// prompt asks for secrets on the terminal, when stdin is one; CI has none.
func (g *globalOptions) prompt() func(string) ([]byte, error) {
	f, ok := g.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(question string) ([]byte, error) {
		fmt.Fprint(g.streams.Err, question)
		defer fmt.Fprintln(g.streams.Err)
		return term.ReadPassword(int(f.Fd()))
	}
}

func (g *globalOptions) reporter() *report.Reporter {
	r := report.New(g.streams.Out, g.format)
	r.Verbose = g.verbose > 0
	f, ok := g.streams.Out.(*os.File)
	r.Live = g.format == report.Text && ok && term.IsTerminal(int(f.Fd()))
	return r
}

// loadClusterAndDialer loads the configuration and builds the SSH dialer for its hosts.
func (g *globalOptions) loadClusterAndDialer() (*api.Cluster, *ssh.Dialer, error) {
	c, err := g.loadCluster()
	if err != nil {
		return nil, nil, err
	}
	d, err := g.dialer(c)
	return c, d, err
}

// loadCluster reads and validates the configuration named by --config.
func (g *globalOptions) loadCluster() (*api.Cluster, error) {
	c, err := api.Load(g.configPath)
	if err != nil {
		return nil, &configError{err: err, path: g.configPath}
	}
	return c, nil
}

// reportError tells the user what failed: a line on stderr, and in JSON mode a final event on stdout.
func (g *globalOptions) reportError(ran *cobra.Command, err error, code int) {
	fmt.Fprintf(g.streams.Err, "Error: %s\n", secret.Redact(err.Error()))
	if code == ExitUsage && ran != nil {
		fmt.Fprintf(g.streams.Err, "Run '%s --help' for usage.\n", ran.CommandPath())
	}
	var silent *silentError
	if g.format == report.JSON && !errors.As(err, &silent) {
		report.New(g.streams.Out, report.JSON).Emit(report.Event{Status: report.Failed, Error: err.Error(), ExitCode: code})
	}
}

// silentError is a failure whose details the command already wrote to stdout in JSON mode.
type silentError struct{ err error }

func (e *silentError) Error() string { return e.err.Error() }
func (e *silentError) Unwrap() error { return e.err }

// group returns a command that only holds subcommands; an unknown subcommand is a usage error, not help.
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return asUsageError(fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()))
			}
			return c.Help()
		},
	}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return asUsageError(fmt.Errorf("%s takes no arguments, got %q", c.CommandPath(), args))
	}
	return nil
}
