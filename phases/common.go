// Package phases declares privcloud's workflows, each as one ordered list of phases in its own file
// (init.go, join.go, reset.go, upgrade.go), and runs them against a cluster.
//
// Phases shared by several workflows are built by the functions in this file so every list uses the same
// definition.
package phases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostlock"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

var (
	controlPlane = []api.Role{api.RoleControlPlane}
	etcdMembers  = []api.Role{api.RoleEtcd}
)

// askEach puts one question to every target at once (at most spec.ssh.concurrency at a time) and returns
// the answers in the targets' order. An unconnected target or a failed question is an error naming its host.
func askEach[T any](ctx context.Context, r *workflow.Run, targets []*workflow.Target, ask func(context.Context, *workflow.Target) (T, error)) ([]T, error) {
	answers := make([]T, len(targets))
	errs := parallel.ForEach(ctx, len(targets), r.Concurrency, func(i int) error {
		t := targets[i]
		if t.Host == nil {
			return fmt.Errorf("host %s is not connected", t.Spec.Name)
		}
		a, err := ask(ctx, t)
		if err != nil {
			return fmt.Errorf("host %s: %w", t.Spec.Name, err)
		}
		answers[i] = a
		return nil
	})
	return answers, errors.Join(errs...)
}

// hostHas runs the shell condition cond (its words quoted) on h, read-only, and says whether it holds.
func hostHas(ctx context.Context, h ssh.Host, cond string) (bool, error) {
	res, err := h.Run(ctx, cond+" && echo yes || true", ssh.ReadOnly())
	return err == nil && strings.TrimSpace(string(res.Stdout)) == "yes", err
}

// fileTest is the shell condition that path exists on the host.
func fileTest(path string) string { return "test -e " + ssh.ShellQuote(path) }

// requireOnHosts fails, naming them, when targets lack path: the node-side part of an add-on (called what) that
// only init and join set up, so that 'addons apply' alone does not leave it half working. lack says what is
// missing, as "nodes lack its configuration".
func requireOnHosts(ctx context.Context, r *workflow.Run, targets []*workflow.Target, path, what, lack string) error {
	return requireOnHostsWhere(ctx, r, targets, fileTest(path), path, what, lack)
}

// requireOnHostsWhere is requireOnHosts for a shell condition on each host (cond, its words quoted), shown as
// where.
func requireOnHostsWhere(ctx context.Context, r *workflow.Run, targets []*workflow.Target, cond, where, what, lack string) error {
	if r.DryRun {
		return nil
	}
	has, err := askEach(ctx, r, targets, func(ctx context.Context, t *workflow.Target) (bool, error) {
		return hostHas(ctx, t.Host, cond)
	})
	if err != nil {
		return err
	}
	var without []string
	for i, t := range targets {
		if !has[i] {
			without = append(without, t.Spec.Name)
		}
	}
	if len(without) > 0 {
		return fmt.Errorf("cluster.yaml turns %s on, but these %s (%s): %s. Run 'privcloud init': it sets up the hosts of a running cluster too, then applies the add-on",
			what, lack, where, strings.Join(without, ", "))
	}
	return nil
}

func connect() workflow.Phase {
	return workflow.Phase{Name: "connect", Short: "Connect to every host over SSH, verifying its host key", Required: true, EveryHost: true,
		RunHost: connectHost}
}

// connectHost opens the host's connection. In a dry run the connection is wrapped in a recorder: the plan
// reads the real host, and every change is reported instead of made.
func connectHost(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if r.Connect == nil {
		return errors.New("no SSH dialer configured")
	}
	h, err := r.Connect(ctx, t.Spec)
	if err != nil {
		return err
	}
	if r.DryRun {
		t.Host = ssh.NewRecorder(t.Spec.Name, h, r.Plan)
		return nil // a plan changes nothing: it takes no lock
	}
	t.Host = h
	return lockHost(ctx, r, t)
}

// lockHost takes the host's lock for the run, so no other privcloud works on it at the same time, then
// removes what an interrupted run left (partial uploads, half-switched links): under the lock they are
// nobody's.
func lockHost(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if r.Owner == nil {
		return nil // runs that do not say who they are (unit tests of single phases) take no lock
	}
	l, err := hostlock.Acquire(ctx, t.Host, *r.Owner)
	if err != nil {
		return err
	}
	t.Release = l.Release
	stale, err := ssh.RemoveStaleUploads(ctx, t.Host)
	if err != nil {
		return err
	}
	for _, f := range stale {
		r.Changed(t.Spec.Name, "removed "+f+", left by an interrupted run")
	}
	return nil
}

func controlPlanePhases() workflow.Phase {
	return workflow.Phase{Name: "control-plane", Short: "Run the Kubernetes control plane", Phases: []workflow.Phase{
		apiserver(),
		controllerManager(),
		scheduler(),
	}}
}

// Execution is how one workflow run is carried out.
type Execution struct {
	DryRun    bool
	Selection workflow.Selection
	Reporter  *report.Reporter
	// Connect opens a host's connection (ssh.Dialer.Connect in the CLI).
	Connect func(ctx context.Context, h api.Host) (ssh.Host, error)
	// Hosts limits the per-host phases to these hosts (reset --hosts); empty: every host.
	Hosts []string
	// Owner, when set, is who takes each host's lock for the run (hostlock.Self in the CLI).
	Owner *hostlock.Owner
}

// Execute runs wf against cluster c and closes every connection it opened. In a dry run every host is a
// recorder: changes are reported as planned actions and nothing is changed.
func Execute(ctx context.Context, wf workflow.Workflow, c *api.Cluster, ex Execution) error {
	steps, err := wf.Select(ex.Selection)
	if err != nil {
		return err
	}
	r := &workflow.Run{Workflow: wf.Name, Command: wf.CommandName(), NoResume: wf.NoResume, Cluster: c, DryRun: ex.DryRun, Reporter: ex.Reporter,
		Concurrency: c.Spec.SSH.Concurrency, Connect: ex.Connect,
		Scope: ex.Hosts, NoRecords: wf.NoRecords, Owner: ex.Owner}

	for _, h := range c.Spec.Hosts {
		r.Targets = append(r.Targets, &workflow.Target{Spec: h})
	}
	defer func() {
		for _, t := range r.Targets {
			if t.Release != nil {
				t.Release()
			}
			if t.Host != nil {
				t.Host.Close()
			}
		}
	}()
	return workflow.Execute(ctx, r, steps)
}

// flagList is a component's extra flags as flag=value, sorted: map order must not change a unit, and so restart
// its service.
func flagList(args map[string]string) []string {
	out := make([]string, 0, len(args))
	for k, v := range args {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}
