package cmd

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/fleet"
	"github.com/privcloud/privcloud/preflight"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

func newExecCommand(g *globalOptions) *cobra.Command {
	var roles, hosts []string
	c := &cobra.Command{
		Use:   "exec [--role R|--hosts a,b] -- COMMAND [ARG...]",
		Short: "Run a command on many hosts at once, with per-host output and exit codes",
		Long: `Run a command as root on the hosts of cluster.yaml, all at once (spec.ssh.concurrency at a time).
One argument is a shell command line ('systemctl is-active kubelet || journalctl -u kubelet -n 20');
several are a program and its arguments, passed unchanged.

Exit code 0 when the command succeeded everywhere, 4 when a host was unreachable, 5 when it failed somewhere.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.fanOut(c, "exec", hosts, roles, func(d *ssh.Dialer, targets []api.Host, concurrency int) ([]fleet.Result, error) {
				return fleet.Run(c.Context(), d, targets, fleet.Command(args), concurrency, g.printExecResult)
			})
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	c.Flags().StringSliceVar(&roles, "role", nil, "run on hosts with any of these roles")
	c.Flags().StringSliceVar(&hosts, "hosts", nil, "run on these hosts (names from cluster.yaml)")
	return c
}

func newCopyCommand(g *globalOptions) *cobra.Command {
	var roles, hosts []string
	var mode string
	c := &cobra.Command{
		Use:   "copy [--role R|--hosts a,b] LOCAL-FILE REMOTE-PATH",
		Short: "Copy a file to many hosts at once, atomically and verified by sha256",
		Long: `Copy a local file to the same path on the hosts of cluster.yaml, streamed (never held in memory), written
to a temporary file, checked by sha256 on the host and renamed into place. Hosts that already hold the same
file are left alone. A connection lost mid-copy is re-established and the copy sent again.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			perm, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || perm > 0o7777 {
				return asUsageError(fmt.Errorf("--mode: %q is not an octal file mode such as 0644", mode))
			}
			if _, err := os.Stat(args[0]); err != nil {
				return asUsageError(err)
			}
			return g.fanOut(c, "copy", hosts, roles, func(d *ssh.Dialer, targets []api.Host, concurrency int) ([]fleet.Result, error) {
				return fleet.Copy(c.Context(), d, targets, args[0], args[1], fs.FileMode(perm), concurrency, g.printExecResult)
			})
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	c.Flags().StringSliceVar(&roles, "role", nil, "copy to hosts with any of these roles")
	c.Flags().StringSliceVar(&hosts, "hosts", nil, "copy to these hosts (names from cluster.yaml)")
	c.Flags().StringVar(&mode, "mode", "0644", "file mode on the hosts (octal)")
	return c
}

// fanOut loads the cluster, selects hosts by --hosts and --role, and runs one fleet operation on them with its
// per-host output and summary.
func (g *globalOptions) fanOut(c *cobra.Command, what string, hosts, roles []string,
	do func(d *ssh.Dialer, targets []api.Host, concurrency int) ([]fleet.Result, error)) error {
	cluster, err := g.loadCluster()
	if err != nil {
		return err
	}
	targets, err := fleet.Select(cluster.Spec.Hosts, hosts, roles)
	if err != nil {
		return asUsageError(err)
	}
	d, err := g.dialer(cluster)
	if err != nil {
		return err
	}
	start := time.Now()
	results, err := do(d, targets, cluster.Spec.SSH.Concurrency)
	g.printExecSummary(what, results, time.Since(start))
	return err
}

func (g *globalOptions) printExecResult(r fleet.Result) {
	if g.format == report.JSON {
		g.writeJSON(r)
		return
	}
	status := fmt.Sprintf("exit %d", r.ExitCode)
	if r.Unreachable {
		status = "UNREACHABLE"
	} else if r.Error != "" {
		status = "ERROR"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s | %s | %s\n", r.Host, status, formatMS(r.DurationMS))
	indent(&b, "  ", r.Stdout)
	indent(&b, "  stderr: ", r.Stderr)
	indent(&b, "  ", r.Error)
	fmt.Fprint(g.streams.Out, b.String())
}

func (g *globalOptions) printExecSummary(what string, results []fleet.Result, d time.Duration) {
	ok, failed, unreachable := 0, 0, 0
	for _, r := range results {
		switch {
		case r.Unreachable:
			unreachable++
		case r.OK():
			ok++
		default:
			failed++
		}
	}
	if g.format == report.JSON {
		g.writeJSON(map[string]any{"summary": map[string]int{"hosts": len(results), "ok": ok, "failed": failed, "unreachable": unreachable},
			"durationMs": float64(d.Microseconds()) / 1000})
		return
	}
	fmt.Fprintf(g.streams.Out, "%s: %d hosts: %d ok, %d failed, %d unreachable in %s\n", what, len(results), ok, failed, unreachable, d.Round(time.Millisecond))
}

func newPreflightCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "preflight",
		Short: "Connect to every host, report what it is and whether the cluster can run there",
		Long: `Connect to every host of cluster.yaml (verifying host keys), read its OS, kernel, CPUs, memory, swap, disk,
cgroup version, clock and /dev/kvm, and check them against the configuration. Errors exit 5; warnings say
what will not work (for example Kata pods on hosts without /dev/kvm).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, d, err := g.loadClusterAndDialer()
			if err != nil {
				return err
			}
			facts, findings, err := preflight.Run(c.Context(), d, cluster)
			g.printPreflight(facts, findings)
			if err != nil && g.format == report.JSON {
				return &silentError{err} // the JSON object already holds every finding
			}
			return err
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	return c
}

func (g *globalOptions) printPreflight(facts []preflight.Facts, findings []preflight.Finding) {
	if g.format == report.JSON {
		g.writeJSON(map[string]any{"hosts": facts, "findings": findings})
		return
	}
	w := g.streams.Out
	if len(facts) > 0 {
		fmt.Fprintf(w, "%-16s %-14s %-22s %-8s %4s %9s %6s %4s %9s\n", "HOST", "OS", "KERNEL", "ARCH", "CPUS", "MEMORY", "CGROUP", "KVM", "CLOCK")
	}
	for _, f := range facts {
		kvm := "no"
		if f.KVM {
			kvm = "yes"
		}
		fmt.Fprintf(w, "%-16s %-14s %-22s %-8s %4d %9s %6s %4s %9s\n", f.Host, f.OS, f.Kernel, f.Arch, f.CPUs,
			fmt.Sprintf("%.1fG", float64(f.MemoryBytes)/(1<<30)), fmt.Sprintf("v%d", f.CgroupVersion), kvm, f.ClockSkew.Round(time.Millisecond))
	}
	for _, f := range findings {
		host := f.Host
		if host == "" {
			host = "cluster"
		}
		fmt.Fprintf(w, "%-8s %-16s %-10s %s\n", strings.ToUpper(string(f.Severity)), host, f.Check, f.Message)
	}
}

func (g *globalOptions) writeJSON(v any) {
	out, _ := json.Marshal(v)
	fmt.Fprintf(g.streams.Out, "%s\n", out)
}

func indent(b *strings.Builder, prefix, text string) {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return
	}
	for _, line := range strings.Split(text, "\n") {
		b.WriteString(prefix + line + "\n")
	}
}

func formatMS(ms float64) string {
	return time.Duration(ms * float64(time.Millisecond)).Round(time.Millisecond).String()
}
