// Package workflow runs ordered phases over cluster hosts. A workflow is data: a tree of named phases whose
// leaves are addressed by path ("certs/etcd-ca"). The runner flattens the tree, applies --only/--skip/--from,
// runs per-host phases in parallel under a concurrency bound, times every phase and host, reports through one
// Reporter and records completed phases on each host so a failed run can be resumed.
package workflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/ssh"
)

// Phase is one named step, or a group of steps. A leaf has exactly one of Run (once for the cluster) or
// RunHost (once per matching host, in parallel); a group has only Phases.
type Phase struct {
	Name  string
	Short string
	// Roles limits a per-host phase to hosts with at least one of these roles; empty means every host.
	Roles []api.Role
	// Required phases run whatever the selection says (connect: every other phase needs its connections);
	// --skip of a required phase is refused.
	Required bool
	// EveryHost phases run on every host of cluster.yaml, also those outside the run's scope (connect: a
	// reset of some hosts still reaches the others' API server and etcd).
	EveryHost bool
	// Skip, when it returns a reason, skips the phase (an add-on that is disabled, say).
	Skip    func(r *Run) string
	Run     func(ctx context.Context, r *Run) error
	RunHost func(ctx context.Context, r *Run, t *Target) error
	Phases  []Phase
}

// Workflow is a command's ordered phase tree.
type Workflow struct {
	Name string
	// Command is the command that runs it when that is not its name ("upgrade apply").
	Command string
	Phases  []Phase
	// NoRecords: hosts keep no record of the phases completed (reset leaves nothing behind, its own records
	// included).
	NoRecords bool
	// NoResume: its command has no --from, so a failure says to run it again rather than where to resume.
	NoResume bool
}

// CommandName is the command that runs the workflow.
func (w Workflow) CommandName() string {
	if w.Command != "" {
		return w.Command
	}
	return w.Name
}

// Step is a leaf phase with its full path.
type Step struct {
	Path  string
	Phase *Phase
}

// Target is a cluster host together with the connection phases use to reach it.
type Target struct {
	Spec api.Host
	Host ssh.Host
	// Release gives back what the run holds on the host (its lock); called before the connection closes.
	Release func()
}

// SkipError is returned by a per-host body that has nothing to do on that host.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// Skip returns a SkipError with reason.
func Skip(reason string) error { return &SkipError{Reason: reason} }

// Steps flattens the tree into its leaves, in order.
func (w Workflow) Steps() []Step {
	var out []Step
	for _, s := range w.Paths() {
		if len(s.Phase.Phases) == 0 {
			out = append(out, s)
		}
	}
	return out
}

// Paths lists every addressable path, groups before their children, in order, each with its description.
func (w Workflow) Paths() []Step {
	var out []Step
	var walk func(prefix string, ps []Phase)
	walk = func(prefix string, ps []Phase) {
		for i := range ps {
			p := &ps[i]
			out = append(out, Step{Path: prefix + p.Name, Phase: p})
			walk(prefix+p.Name+"/", p.Phases)
		}
	}
	walk("", w.Phases)
	return out
}

// Check reports a malformed tree: empty or duplicate names, leaves without exactly one body, groups with one.
func (w Workflow) Check() error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range w.Paths() {
		p := s.Phase
		switch {
		case p.Name == "" || strings.ContainsAny(p.Name, "/ "):
			errs = append(errs, fmt.Errorf("%s: phase name %q must be non-empty without '/' or spaces", w.Name, p.Name))
		case seen[s.Path]:
			errs = append(errs, fmt.Errorf("%s: phase %s declared twice", w.Name, s.Path))
		}
		seen[s.Path] = true
		bodies := 0
		if p.Run != nil {
			bodies++
		}
		if p.RunHost != nil {
			bodies++
		}
		if len(p.Phases) > 0 && bodies > 0 {
			errs = append(errs, fmt.Errorf("%s: group %s must not have a body of its own", w.Name, s.Path))
		}
		if len(p.Phases) == 0 && bodies != 1 {
			errs = append(errs, fmt.Errorf("%s: phase %s needs exactly one of Run or RunHost", w.Name, s.Path))
		}
	}
	return errors.Join(errs...)
}

// Selection narrows a workflow to some of its phases. Each entry is a path; a group's path selects all its
// phases.
type Selection struct {
	Only []string
	Skip []string
	From string
}

// SelectionError is an --only/--skip/--from path the workflow does not have.
type SelectionError struct {
	Flag, Path, Workflow string
	Valid                []string
	Reason               string
}

func (e *SelectionError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("--%s %s: %s", e.Flag, e.Path, e.Reason)
	}
	return fmt.Sprintf("--%s: %s has no phase %q; its phases are: %s", e.Flag, e.Workflow, e.Path, strings.Join(e.Valid, ", "))
}

// ExitClass makes a selection the workflow does not have a usage error.
func (e *SelectionError) ExitClass() exitclass.Class { return exitclass.Usage }

// Select returns the steps to run: from the first step matching From (if set), those matching Only (if set),
// minus those matching Skip.
func (w Workflow) Select(sel Selection) ([]Step, error) {
	steps := w.Steps()
	var valid []string
	known := map[string]bool{}
	for _, s := range w.Paths() {
		valid = append(valid, s.Path)
		known[s.Path] = true
	}
	check := func(flag string, paths ...string) error {
		for _, p := range paths {
			if !known[p] {
				return &SelectionError{Flag: flag, Path: p, Workflow: w.Name, Valid: valid}
			}
		}
		return nil
	}
	if err := errors.Join(check("only", sel.Only...), check("skip", sel.Skip...)); err != nil {
		return nil, err
	}
	for _, s := range steps {
		if s.Phase.Required && matchesAny(s.Path, sel.Skip) {
			return nil, &SelectionError{Flag: "skip", Path: s.Path, Workflow: w.Name, Valid: valid,
				Reason: "it cannot be skipped: the phases after it depend on it"}
		}
	}
	if sel.From != "" {
		if err := check("from", sel.From); err != nil {
			return nil, err
		}
		for i, s := range steps {
			if matches(s.Path, sel.From) {
				steps = steps[i:]
				break
			}
		}
	}
	var out []Step
	for _, s := range w.Steps() {
		if s.Phase.Required && !containsStep(steps, s.Path) {
			out = append(out, s) // before --from's start: still needed
		}
	}
	for _, s := range steps {
		if s.Phase.Required {
			out = append(out, s)
			continue
		}
		if len(sel.Only) > 0 && !matchesAny(s.Path, sel.Only) {
			continue
		}
		if matchesAny(s.Path, sel.Skip) {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func containsStep(steps []Step, path string) bool {
	for _, s := range steps {
		if s.Path == path {
			return true
		}
	}
	return false
}

func matches(path, sel string) bool {
	return path == sel || strings.HasPrefix(path, sel+"/")
}

func matchesAny(path string, sels []string) bool {
	for _, s := range sels {
		if matches(path, s) {
			return true
		}
	}
	return false
}
