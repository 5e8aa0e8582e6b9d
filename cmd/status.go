package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/status"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the whole cluster as it is, what is wrong first; exit 8 when it is degraded",
		Long: `Look at the running cluster, read-only: every host (reachable, OS, kernel, the last privcloud run
recorded on it), the version of every component privcloud installed on each host and whether its unit is active,
etcd's members (health, leader, database size), each API server's readiness, the nodes, the certificates of
the state directory that expire soonest, and the add-ons. Problems come first, each naming its host and
component. A healthy cluster exits 0; a degraded one (a host unreachable, a service not active, a member
unhealthy, a node not Ready, an add-on not ready, a certificate expired) exits 8, so CI can gate on it; a
certificate within 30 days of its end is a warning. A host that does not answer within spec.ssh.connectTimeout
is reported unreachable (one attempt). -o json prints the report as one document (README.md,
"privcloud status").`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cluster, d, err := g.loadClusterAndDialer()
			if err != nil {
				return err
			}
			// a look, not a change: a host that does not answer the first time is reported as it is
			d.Attempts = 1
			rep := status.Gather(c.Context(), cluster, d, time.Now())
			var degraded error
			if !rep.Healthy {
				degraded = &degradedError{problems: rep.Problems}
			}
			if g.format == report.JSON {
				g.writeJSON(rep)
				if degraded != nil {
					return &silentError{degraded}
				}
				return nil
			}
			printStatus(g.streams.Out, rep)
			return degraded
		},
	}
	g.addConfigFlag(c)
	g.addOutputFlag(c)
	g.addConnectFlags(c)
	return c
}

// degradedError is a cluster status with problems.
type degradedError struct{ problems []status.Problem }

func (e *degradedError) Error() string {
	n := 0
	for _, p := range e.problems {
		if p.Severity == "error" {
			n++
		}
	}
	return fmt.Sprintf("the cluster is degraded: %d problem(s), listed first above", n)
}

func (e *degradedError) ExitClass() exitclass.Class { return exitclass.Degraded }

// printStatus renders a report for a terminal: the verdict and the problems first, then each part in a table.
func printStatus(w io.Writer, rep *status.Report) {
	verdict := "healthy"
	if !rep.Healthy {
		verdict = "DEGRADED"
	}
	fmt.Fprintf(w, "cluster %s: %s (read in %.1fs)\n", rep.Cluster, verdict, rep.Seconds)
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "\nPROBLEMS")
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  %-8s %-8s %-24s %s\n", strings.ToUpper(p.Severity), orDash(p.Host), p.Component, p.Message)
		}
	}

	fmt.Fprintf(w, "\n%-10s %-26s %-10s %-12s %-20s %s\n", "HOST", "ROLES", "REACHABLE", "OS", "KERNEL", "LAST RUN")
	for _, h := range rep.Hosts {
		reach, last := "yes", "-"
		if !h.Reachable || (h.Error != "" && len(h.Components) == 0) {
			reach = "NO"
		}
		if h.LastRun != nil {
			last = fmt.Sprintf("%s (%s), %s ago", h.LastRun.Workflow, h.LastRun.Phase, ago(rep.Time.Sub(h.LastRun.CompletedAt)))
		}
		fmt.Fprintf(w, "%-10s %-26s %-10s %-12s %-20s %s\n", h.Name, strings.Join(h.Roles, ","), reach, orDash(h.OS), orDash(h.Kernel), last)
	}
	printComponents(w, rep.Hosts)

	if len(rep.Etcd) > 0 {
		fmt.Fprintf(w, "\n%-10s %-30s %-7s %-10s %s\n", "ETCD", "HEALTH", "LEADER", "DB", "VERSION")
		for _, m := range rep.Etcd {
			leader, db := "", "-"
			if m.Leader {
				leader = "leader"
			}
			if m.DBSizeBytes > 0 {
				db = status.Size(m.DBSizeBytes)
			}
			fmt.Fprintf(w, "%-10s %-30s %-7s %-10s %s\n", m.Host, clip(m.Health, 30), leader, db, orDash(m.Version))
		}
	}
	if len(rep.Nodes) > 0 {
		fmt.Fprintf(w, "\n%-10s %-10s %s\n", "NODE", "READY", "KUBELET")
		for _, n := range rep.Nodes {
			ready := "Ready"
			if !n.Ready {
				ready = "NOT READY"
			}
			fmt.Fprintf(w, "%-10s %-10s %s\n", n.Name, ready, n.Version)
		}
	}
	if len(rep.Certificates) > 0 {
		fmt.Fprintf(w, "\n%-36s %-12s %s\n", "CERTIFICATE (SOONEST FIRST)", "EXPIRES", "IN")
		for _, c := range rep.Certificates {
			if c.Problem != "" {
				fmt.Fprintf(w, "%-36s %s\n", c.Name, c.Problem)
				continue
			}
			fmt.Fprintf(w, "%-36s %-12s %dd\n", c.Name, c.NotAfter.Format("2006-01-02"), c.ExpiresInDays)
		}
	}
	if len(rep.Addons) > 0 {
		fmt.Fprintf(w, "\n%-10s %s\n", "ADD-ON", "STATE")
		for _, a := range rep.Addons {
			fmt.Fprintf(w, "%-10s %s\n", a.Name, a.State)
		}
	}
}

// printComponents is a table of components by host, hosts as columns (eight at a time, to fit a terminal): the
// version of each, or the state of a unit that is not active.
func printComponents(w io.Writer, hosts []status.Host) {
	var names []string
	seen := map[string]bool{}
	for _, h := range hosts {
		for _, c := range h.Components {
			if !seen[c.Name] {
				seen[c.Name] = true
				names = append(names, c.Name)
			}
		}
	}
	if len(names) == 0 {
		return
	}
	for first := 0; first < len(hosts); first += 8 {
		group := hosts[first:min(first+8, len(hosts))]
		fmt.Fprintf(w, "\n%-24s", "COMPONENT")
		for _, h := range group {
			fmt.Fprintf(w, " %-10s", h.Name)
		}
		fmt.Fprintln(w)
		for _, n := range names {
			fmt.Fprintf(w, "%-24s", n)
			for _, h := range group {
				fmt.Fprintf(w, " %-10s", componentCell(h, n))
			}
			fmt.Fprintln(w)
		}
	}
}

func componentCell(h status.Host, name string) string {
	for _, c := range h.Components {
		if c.Name != name {
			continue
		}
		switch {
		case c.Version == "" && c.Expected:
			return "MISSING"
		case c.Unit != "" && c.State != "active" && c.Expected:
			return strings.ToUpper(orDash(c.State))
		}
		return orDash(c.Version)
	}
	return "-"
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
